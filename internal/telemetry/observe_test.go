package telemetry

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/prometheus/client_golang/prometheus"
)

// TestObserveCollector: the slow log, hot-key and big-key series, their
// values and labels; the hot keys are the top N only, named by hash
// unless names are allowed.
func TestObserveCollector(t *testing.T) {
	sl := slowlog.New(0, 2)
	for _, c := range []string{"get", "get", "set"} {
		sl.Add(slowlog.Entry{Command: c})
	}
	sl.Reset() // counters keep counting
	sl.Add(slowlog.Entry{Command: "get"})
	hk := hotkeys.New(hotkeys.Config{TopK: 8})
	for i, k := range []string{"a", "a", "a", "b", "b", "c"} {
		hk.Add(hotkeys.Sample{Key: []byte(k), Node: "n1:6379", Bytes: 10}, int64(i))
	}
	big := hotkeys.NewBig(100, 4)
	big.Add([]byte("blob"), "set", "n1:6379", 200, false, 1)
	big.Add([]byte("blob"), "get", "n1:6379", 200, true, 1)
	big.Add([]byte("blob"), "get", "n1:6379", 300, true, 2)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewObserveCollector(ObserveSources{Slowlog: sl, HotKeys: hk, BigKeys: big, HotKeysTop: 2}))
	want := `
# HELP jupiter_bigkeys_entries Key/command pairs JUPITER BIGKEYS holds.
# TYPE jupiter_bigkeys_entries gauge
jupiter_bigkeys_entries 2
# HELP jupiter_bigkeys_seen_total Commands whose request or reply reached --bigkeys-threshold, by which of the two (dir).
# TYPE jupiter_bigkeys_seen_total counter
jupiter_bigkeys_seen_total{dir="reply"} 2
jupiter_bigkeys_seen_total{dir="request"} 1
# HELP jupiter_slowlog_commands_total Commands this pod's slow log recorded, by command name.
# TYPE jupiter_slowlog_commands_total counter
jupiter_slowlog_commands_total{command="get"} 3
jupiter_slowlog_commands_total{command="set"} 1
# HELP jupiter_slowlog_entries_total Commands this pod's slow log recorded (at least --slowlog-slower-than through jupiter), also those it no longer holds.
# TYPE jupiter_slowlog_entries_total counter
jupiter_slowlog_entries_total 4
# HELP jupiter_slowlog_length Entries this pod's slow log holds (SLOWLOG LEN).
# TYPE jupiter_slowlog_length gauge
jupiter_slowlog_length 1
# HELP jupiter_slowlog_max_length Entries this pod's slow log keeps at most (--slowlog-max-len).
# TYPE jupiter_slowlog_max_length gauge
jupiter_slowlog_max_length 2
# HELP jupiter_hotkeys_samples_total Commands this pod fed to the hot-key sketch (one in --hotkeys-sample), per key.
# TYPE jupiter_hotkeys_samples_total counter
jupiter_hotkeys_samples_total 6
`
	score := `
# HELP jupiter_hotkey_score Estimated recent commands on this pod's hottest keys (sketch estimate scaled by the sampling rate; halves every --hotkeys-half-life without traffic), top --hotkeys-metrics; key is a hash of the key unless --hotkeys-metrics-names.
# TYPE jupiter_hotkey_score gauge
jupiter_hotkey_score{key="` + hotkeys.ID("a") + `",node="n1:6379",rank="1"} 3
jupiter_hotkey_score{key="` + hotkeys.ID("b") + `",node="n1:6379",rank="2"} 2
`
	got := scrape(t, reg)
	for _, l := range strings.Split(strings.TrimSpace(want+score), "\n") {
		if !strings.Contains(got, l+"\n") {
			t.Errorf("/metrics lacks %q", l)
		}
	}
	if n := strings.Count(got, "jupiter_hotkey_score{"); n != 2 {
		t.Errorf("%d jupiter_hotkey_score series, want the top 2", n)
	}
	count := func(src ObserveSources, prefix string) int {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewObserveCollector(src))
		n := 0
		for _, l := range strings.Split(scrape(t, reg), "\n") {
			if strings.HasPrefix(l, prefix) {
				n++
			}
		}
		return n
	}
	if n := count(ObserveSources{Slowlog: sl, HotKeys: hk}, "jupiter_hotkey_"); n != 0 {
		t.Errorf("HotKeysTop 0 exported %d hot-key series", n)
	}
	// Off observers: the slow log's series stay (zero), the others go.
	if n := count(ObserveSources{}, "jupiter_"); n != 3 {
		t.Errorf("all observers off: %d series, want the slow log's 3", n)
	}
}

// TestMetricKey: a key label is valid UTF-8 whatever the key's bytes, cut
// at MetricKeyBytes, and without names a hash that never shows the key.
func TestMetricKey(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"user:1", "user:1"},
		{"a\"b\xff\n", `a\"b\xff\n`},
		{strings.Repeat("k", 70), strings.Repeat("k", 64) + "..."},
	} {
		if got := MetricKey(tc.key, true); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("MetricKey(%q, true) = %q, want %q", tc.key, got, tc.want)
		}
	}
	h := MetricKey("secret-token:abc", false)
	if h != hotkeys.ID("secret-token:abc") || strings.Contains(h, "secret") || len(h) != 18 {
		t.Errorf("MetricKey without names = %q", h)
	}
}
