package main

import (
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/config"
)

// TestObservers: the flags' defaults turn every observer on (slow log at
// 10 ms keeping 128, hot keys sampling 1 in 100, big keys from 1 MiB); 0
// turns hot and big keys off, a negative threshold the slow log.
func TestObservers(t *testing.T) {
	o := observers(config.Default())
	if o.Slowlog.SlowerThan() != 10*time.Millisecond || o.Slowlog.MaxLen() != 128 || o.HotKeys.Scale() != 100 || o.BigKeys.Threshold() != 1<<20 {
		t.Errorf("defaults: slow log %v/%d, hot keys 1/%d, big keys %d", o.Slowlog.SlowerThan(), o.Slowlog.MaxLen(), o.HotKeys.Scale(), o.BigKeys.Threshold())
	}
	c := config.Default()
	c.SlowlogSlowerThan, c.HotkeysSample, c.BigkeysThreshold = -1, 0, 0
	o = observers(c)
	if o.Slowlog.SlowerThan() >= 0 || o.HotKeys != nil || o.BigKeys != nil {
		t.Errorf("off: %+v", o)
	}
	if p := proxyOptions(config.Default(), o); p.Obs.Slowlog != o.Slowlog || p.Obs.HotKeys != o.HotKeys || p.Obs.BigKeys != o.BigKeys {
		t.Error("proxyOptions does not carry the observers")
	}
}
