package telemetry

import (
	"strconv"

	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/prometheus/client_golang/prometheus"
)

// ObserveSources are the pod's observers (admin.Observers) as the metrics
// read them; any may be nil (off).
type ObserveSources struct {
	Slowlog *slowlog.Log
	HotKeys *hotkeys.Sketch
	BigKeys *hotkeys.Big
	// HotKeysTop is how many of the hottest keys become jupiter_hotkey_score
	// series (0: none). It bounds the series: at most HotKeysTop at a
	// scrape, one per rank.
	HotKeysTop int
	// HotKeyNames labels those series with the key itself (escaped, cut at
	// MetricKeyBytes); otherwise with its hotkeys.ID. Keys are the applications'
	// data and /metrics is usually readable by any scraper, so names are
	// opt-in (--hotkeys-metrics-names).
	HotKeyNames bool
}

// MetricKeyBytes is the most of a key a jupiter_hotkey_score label shows.
const MetricKeyBytes = 64

// ObserveCollector exports the slow log, hot keys and big keys as
// jupiter_slowlog_*, jupiter_hotkey* and jupiter_bigkeys_* series, read
// at scrape time (the request path only feeds the observers).
type ObserveCollector struct {
	src ObserveSources

	slowTotal, slowByCmd, slowLen, slowMax *prometheus.Desc
	hotSamples, hotScore, hotBytes         *prometheus.Desc
	bigSeen, bigLen                        *prometheus.Desc
}

// NewObserveCollector returns a collector over src.
func NewObserveCollector(src ObserveSources) *ObserveCollector {
	hot := []string{"rank", "key", "node"}
	return &ObserveCollector{
		src:        src,
		slowTotal:  prometheus.NewDesc("jupiter_slowlog_entries_total", "Commands this pod's slow log recorded (at least --slowlog-slower-than through jupiter), also those it no longer holds.", nil, nil),
		slowByCmd:  prometheus.NewDesc("jupiter_slowlog_commands_total", "Commands this pod's slow log recorded, by command name.", []string{"command"}, nil),
		slowLen:    prometheus.NewDesc("jupiter_slowlog_length", "Entries this pod's slow log holds (SLOWLOG LEN).", nil, nil),
		slowMax:    prometheus.NewDesc("jupiter_slowlog_max_length", "Entries this pod's slow log keeps at most (--slowlog-max-len).", nil, nil),
		hotSamples: prometheus.NewDesc("jupiter_hotkeys_samples_total", "Commands this pod fed to the hot-key sketch (one in --hotkeys-sample), per key.", nil, nil),
		hotScore: prometheus.NewDesc("jupiter_hotkey_score", "Estimated recent commands on this pod's hottest keys (sketch estimate scaled by the sampling rate; "+
			"halves every --hotkeys-half-life without traffic), top --hotkeys-metrics; key is a hash of the key unless --hotkeys-metrics-names.", hot, nil),
		hotBytes: prometheus.NewDesc("jupiter_hotkey_bytes", "Estimated recent request and reply bytes of the keys jupiter_hotkey_score ranks (same labels).", hot, nil),
		bigSeen:  prometheus.NewDesc("jupiter_bigkeys_seen_total", "Commands whose request or reply reached --bigkeys-threshold, by which of the two (dir).", []string{"dir"}, nil),
		bigLen:   prometheus.NewDesc("jupiter_bigkeys_entries", "Key/command pairs JUPITER BIGKEYS holds.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ObserveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.slowTotal, c.slowByCmd, c.slowLen, c.slowMax,
		c.hotSamples, c.hotScore, c.hotBytes, c.bigSeen, c.bigLen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. The slow log's series exist
// even when it is off (zero); the hot-key and big-key ones only when those
// observers are on.
func (c *ObserveCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src
	ch <- prometheus.MustNewConstMetric(c.slowTotal, prometheus.CounterValue, float64(s.Slowlog.Added()))
	s.Slowlog.Counts(func(cmd string, n uint64) {
		ch <- prometheus.MustNewConstMetric(c.slowByCmd, prometheus.CounterValue, float64(n), cmd)
	})
	ch <- prometheus.MustNewConstMetric(c.slowLen, prometheus.GaugeValue, float64(s.Slowlog.Len()))
	ch <- prometheus.MustNewConstMetric(c.slowMax, prometheus.GaugeValue, float64(s.Slowlog.MaxLen()))
	if s.HotKeys != nil {
		ch <- prometheus.MustNewConstMetric(c.hotSamples, prometheus.CounterValue, float64(s.HotKeys.Samples()))
		if s.HotKeysTop > 0 {
			for i, it := range s.HotKeys.Top(s.HotKeysTop, hotkeys.ByCount) {
				l := []string{strconv.Itoa(i + 1), MetricKey(it.Key, s.HotKeyNames), it.Node}
				ch <- prometheus.MustNewConstMetric(c.hotScore, prometheus.GaugeValue, float64(it.Count), l...)
				ch <- prometheus.MustNewConstMetric(c.hotBytes, prometheus.GaugeValue, float64(it.Bytes), l...)
			}
		}
	}
	if s.BigKeys.Threshold() > 0 {
		req, rep := s.BigKeys.Seen()
		ch <- prometheus.MustNewConstMetric(c.bigSeen, prometheus.CounterValue, float64(req), "request")
		ch <- prometheus.MustNewConstMetric(c.bigSeen, prometheus.CounterValue, float64(rep), "reply")
		ch <- prometheus.MustNewConstMetric(c.bigLen, prometheus.GaugeValue, float64(s.BigKeys.Len()))
	}
}

// MetricKey is the key label of a hot key: with names, the key escaped as
// redis-cli shows binary strings (valid UTF-8 whatever the bytes) without
// the surrounding quotes, cut at MetricKeyBytes and then ending in "...";
// without, its hotkeys.ID.
func MetricKey(key string, names bool) string {
	if !names {
		return hotkeys.ID(key)
	}
	k, cut := key, false
	if len(k) > MetricKeyBytes {
		k, cut = k[:MetricKeyBytes], true
	}
	q := resp.AppendQuoted(make([]byte, 0, len(k)+8), []byte(k))
	q = q[1 : len(q)-1]
	if cut {
		q = append(q, "..."...)
	}
	return string(q)
}
