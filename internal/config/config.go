// Package config is jupiter's one configuration struct: its defaults, its
// validation, and its binding to command-line flags and JUPITER_* environment
// variables. It is built once in cmd/jupiter and passed down as values;
// no other package reads flags or the environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is everything `jupiter serve` can be told.
type Config struct {
	Listen      string   // RESP listen address
	AdminListen string   // HTTP: /healthz /readyz /metrics /v1/status
	Backends    []string // host:port of the Redis nodes (cluster mode: seed only)

	// Cluster mode (empty SpannerDB = standalone).
	SpannerDB    string // projects/P/instances/I/databases/D
	HedgeAddr    string // host:port this pod's hedge member listens on (and port+1)
	LockTable    string
	LogTable     string
	LockName     string
	RingTable    string
	HistoryTable string
	PollInterval time.Duration // how often pods re-read the ring from Spanner
	LockLease    time.Duration // spindle lock lease: a dead leader is replaced after about this long
	MemberSync   time.Duration // hedge membership heartbeat interval

	// Rebalancing (cluster mode).
	Rebalance          string        // "staged" (move keys, default) or "remap" (switch at once, keys re-miss)
	MemberLease        time.Duration // member registry lease: a silent pod stops holding up barriers after this
	FreezeTimeout      time.Duration // freeze barrier bound before a rebalance goes back to prepare (retreat.go: aborts for a pod stuck 3 times in a row or after 3 minutes)
	MigrateKeysPerSec  float64       // migrator throttle per source node (0 = unlimited)
	MigrateBytesPerSec float64       // migrator throttle per source node in DUMP bytes/s (0 = unlimited)
	MigrateTargetDelay time.Duration // migrator pauses while node PINGs take this much over their base (0 = off)
	MigrateInflight    int           // migrator batches in flight per destination node, all sources together (twice that per source)

	// Data path.
	HashPrefix    string        // trailing "hash=<key>" override; empty disables
	BackendConns  int           // multiplexed connections per node
	BackendLinger time.Duration // longest wait for owed replies before a backend write (0 = none)
	// MaxDedicated bounds the dedicated connections per node (WATCH
	// transactions, later blocking commands and subscriptions).
	MaxDedicated   int
	DialTimeout    time.Duration // backend dial timeout
	RequestTimeout time.Duration // backend reply timeout
	MaxClients     int           // 0 = unlimited
	IdleTimeout    time.Duration // 0 = keep idle clients forever
	MaxArgBytes    int           // largest single argument accepted
	MaxArgs        int           // most arguments in one command
	MaxPipeline    int           // most commands of one client executed (and buffered) as one batch
	// RebalanceHoldMax: during a rebalance's FREEZE stage, the longest a
	// write to a moving key waits for MIGRATING before -TRYAGAIN.
	RebalanceHoldMax time.Duration

	// CapacityInterval is how often the capacity gatherer asks every node
	// for INFO (JUPITER NODES figures, jupiter_node_* metrics, ctl top);
	// 0 turns it off. In cluster mode the leader also sums the pods'
	// request rates this often.
	CapacityInterval time.Duration
	// FleetHealth (cluster mode, with the capacity gatherer on): a node
	// that a quorum of pods cannot reach is marked down by the leader and
	// its keys fail at once on every pod until a quorum reaches it again
	// (docs/health.md). false: pods report and show health, enforce none.
	FleetHealth bool

	Security Security // client/admin/backend auth and TLS (security.go)

	// What operators look at (the proxy's own slow log, hot and big keys).
	// SlowlogSlowerThan: commands at least this many microseconds through
	// jupiter are logged (Redis's slowlog-log-slower-than: 0 logs every
	// command, negative none); SlowlogMaxLen entries are kept.
	SlowlogSlowerThan int
	SlowlogMaxLen     int
	// HotkeysSample: one command in this many feeds the hot-key sketch
	// (0 = off); its counts halve every HotkeysHalfLife.
	HotkeysSample   int
	HotkeysHalfLife time.Duration
	// HotkeysMetrics: the hottest this many keys are exported as
	// jupiter_hotkey_score (0 = none). Their names are hashed unless
	// HotkeysMetricsNames: keys are the applications' data, and /metrics
	// is usually open to any scraper (JUPITER HOTKEYS and /v1/hotkeys
	// show names, behind the passwords).
	HotkeysMetrics      int
	HotkeysMetricsNames bool
	// BigkeysThreshold: a command whose request or reply has at least this
	// many bytes is listed by JUPITER BIGKEYS (0 = off).
	BigkeysThreshold int

	ShutdownTimeout time.Duration // bound on the SIGTERM drain
	// DrainDelay: after SIGTERM, keep serving (and accepting) this long
	// with /readyz failing, so load balancers and pooled clients move away
	// before connections are closed at command boundaries.
	DrainDelay time.Duration
	LogLevel   string // debug|info|warn|error
	LogFormat  string // json|text|auto (auto: text on a terminal)
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Listen:             ":6379",
		AdminListen:        ":9090",
		LockTable:          "jupiter_lock",
		LogTable:           "jupiter_log",
		LockName:           "jupiter",
		RingTable:          "jupiter_ring",
		HistoryTable:       "jupiter_ring_history",
		PollInterval:       2 * time.Second,
		Rebalance:          "staged",
		MemberLease:        10 * time.Second,
		FreezeTimeout:      5 * time.Second,
		MigrateBytesPerSec: 50 << 20,
		MigrateInflight:    2,
		LockLease:          10 * time.Second,
		MemberSync:         10 * time.Second,

		HashPrefix:      "hash=",
		BackendConns:    1,                     // like twemproxy: one connection per node packs the most requests per write
		BackendLinger:   50 * time.Microsecond, // measured best of 0/50/150 µs under redis-benchmark -c 50; only while replies are owed
		MaxDedicated:    2048,                  // far below a Memorystore node's 65,000 clients; each is one client connection held
		DialTimeout:     time.Second,           // a dead node fails its keys within ~1s
		RequestTimeout:  2 * time.Second,       // below go-redis's default 3s read timeout
		MaxArgBytes:     64 << 20,              // a proxy buffers whole commands: far below redis's 512 MiB
		MaxArgs:         1 << 20,               // redis-server's own limit
		MaxPipeline:     1024,                  // bounds one client's buffered replies
		ShutdownTimeout: 20 * time.Second,      // fits terminationGracePeriodSeconds=30
		DrainDelay:      3 * time.Second,       // endpoint removal takes a few seconds
		LogLevel:        "info",
		LogFormat:       "auto",

		RebalanceHoldMax: 500 * time.Millisecond, // below go-redis's 3s read timeout, with room for a retry
		CapacityInterval: 5 * time.Second,        // one INFO per node per pod every 5s: figures a few seconds old, negligible load
		FleetHealth:      true,                   // a node down for a quorum of pods fails fast everywhere

		SlowlogSlowerThan: 10000,       // Redis's default, 10 ms
		SlowlogMaxLen:     128,         // Redis's default
		HotkeysSample:     100,         // ~1% of commands: a sketch update costs ~1 µs, so ~10 ns per command
		HotkeysHalfLife:   time.Minute, // the ranking follows the last few minutes
		HotkeysMetrics:    10,          // a top 10 is what a dashboard shows; bounds the series
		BigkeysThreshold:  1 << 20,     // 1 MiB: a value that size holds a node's event loop for ~1 ms and fills a client's buffers
	}
}

// Cluster reports whether the configuration asks for cluster mode.
func (c Config) Cluster() bool { return c.SpannerDB != "" }

// Validate reports every problem at once, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, a...)))
	}
	if err := checkListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.AdminListen != "" {
		if err := checkListen(c.AdminListen); err != nil {
			bad("admin-listen", "%v", err)
		}
	}
	if !c.Cluster() && len(c.Backends) == 0 {
		bad("backends", "at least one host:port is required in standalone mode (or set --spanner-db)")
	}
	seen := map[string]bool{}
	for _, b := range c.Backends {
		if err := checkHostPort(b); err != nil {
			bad("backends", "%q: %v", b, err)
		}
		if seen[b] {
			bad("backends", "%q is listed twice", b)
		}
		seen[b] = true
	}
	if c.Cluster() {
		parts := strings.Split(c.SpannerDB, "/")
		if len(parts) != 6 || parts[0] != "projects" || parts[2] != "instances" || parts[4] != "databases" ||
			parts[1] == "" || parts[3] == "" || parts[5] == "" {
			bad("spanner-db", "want projects/P/instances/I/databases/D, got %q", c.SpannerDB)
		}
		if err := checkHostPort(c.HedgeAddr); err != nil {
			bad("hedge-addr", "cluster mode needs this pod's reachable host:port: %v", err)
		}
		for flag, v := range map[string]string{"lock-table": c.LockTable, "log-table": c.LogTable,
			"ring-table": c.RingTable, "history-table": c.HistoryTable, "lock-name": c.LockName} {
			if !identifier(v) {
				bad(flag, "%q is not a valid Spanner identifier", v)
			}
		}
		if c.PollInterval < 100*time.Millisecond {
			bad("poll-interval", "%v is too short (minimum 100ms)", c.PollInterval)
		}
		if c.LockLease < 2*time.Second {
			bad("lock-lease", "%v is too short (hedge's minimum is 2s)", c.LockLease)
		}
		if c.MemberSync < 2*time.Second {
			bad("member-sync-interval", "%v is too short (hedge's minimum is 2s)", c.MemberSync)
		}
		if c.Rebalance != "staged" && c.Rebalance != "remap" {
			bad("rebalance", "%q, want staged or remap", c.Rebalance)
		}
		if c.MemberLease < 3*c.PollInterval {
			bad("member-lease", "%v must be at least 3 poll intervals (%v): pods renew it on every poll", c.MemberLease, 3*c.PollInterval)
		}
		if c.FreezeTimeout < 500*time.Millisecond || c.FreezeTimeout > time.Minute {
			bad("rebalance-freeze-timeout", "%v, want 500ms..1m", c.FreezeTimeout)
		}
		if c.MigrateKeysPerSec < 0 || c.MigrateBytesPerSec < 0 {
			bad("migrate-keys-per-sec/migrate-bytes-per-sec", "must not be negative")
		}
		if c.MigrateTargetDelay < 0 || c.MigrateTargetDelay > time.Second {
			bad("migrate-target-delay", "%v, want 0 (off) or up to 1s", c.MigrateTargetDelay)
		}
		if c.MigrateInflight < 1 || c.MigrateInflight > 16 {
			bad("migrate-inflight", "%d, want 1..16", c.MigrateInflight)
		}
	}
	if strings.ContainsAny(c.HashPrefix, " \r\n") {
		bad("hash-prefix", "must not contain spaces or newlines")
	}
	if c.BackendConns < 1 || c.BackendConns > 64 {
		bad("backend-conns", "%d, want 1..64", c.BackendConns)
	}
	if c.BackendLinger < 0 || c.BackendLinger > 10*time.Millisecond {
		bad("backend-linger", "%s, want 0..10ms", c.BackendLinger)
	}
	if c.MaxDedicated < 1 || c.MaxDedicated > 65000 {
		bad("max-dedicated-conns", "%d, want 1..65000", c.MaxDedicated)
	}
	if c.DrainDelay < 0 || c.DrainDelay > 5*time.Minute {
		bad("drain-delay", "%s, want 0..5m", c.DrainDelay)
	}
	if c.DialTimeout <= 0 {
		bad("dial-timeout", "must be positive")
	}
	if c.RequestTimeout <= 0 {
		bad("request-timeout", "must be positive")
	}
	if c.MaxClients < 0 {
		bad("max-clients", "must be >= 0")
	}
	if c.IdleTimeout < 0 {
		bad("idle-timeout", "must be >= 0")
	}
	if c.MaxArgBytes < 1024 || c.MaxArgBytes > 512<<20 {
		bad("max-arg-bytes", "%d, want 1024..%d", c.MaxArgBytes, 512<<20)
	}
	if c.MaxPipeline < 1 || c.MaxPipeline > 1<<16 {
		bad("max-pipeline", "%d, want 1..65536", c.MaxPipeline)
	}
	if c.RebalanceHoldMax < 10*time.Millisecond || c.RebalanceHoldMax > 10*time.Second {
		bad("rebalance-hold-max", "%v, want 10ms..10s (keep it below clients' read timeout)", c.RebalanceHoldMax)
	}
	if c.CapacityInterval != 0 && (c.CapacityInterval < 250*time.Millisecond || c.CapacityInterval > 10*time.Minute) {
		bad("capacity-interval", "%v, want 0 (off) or 250ms..10m", c.CapacityInterval)
	}
	if c.MaxArgs < 16 {
		bad("max-args", "%d, want >= 16", c.MaxArgs)
	}
	if c.SlowlogMaxLen < 0 || c.SlowlogMaxLen > 100000 {
		bad("slowlog-max-len", "%d, want 0..100000", c.SlowlogMaxLen)
	}
	if c.HotkeysSample < 0 || c.HotkeysSample > 1<<20 {
		bad("hotkeys-sample", "%d, want 0 (off) or 1..%d (one command in N)", c.HotkeysSample, 1<<20)
	}
	if c.HotkeysHalfLife < time.Second || c.HotkeysHalfLife > 24*time.Hour {
		bad("hotkeys-half-life", "%v, want 1s..24h", c.HotkeysHalfLife)
	}
	if c.HotkeysMetrics < 0 || c.HotkeysMetrics > 64 {
		bad("hotkeys-metrics", "%d, want 0..64 (the sketch keeps 64 keys)", c.HotkeysMetrics)
	}
	if c.BigkeysThreshold < 0 {
		bad("bigkeys-threshold", "%d, want >= 0 (0 = off)", c.BigkeysThreshold)
	}
	c.Security.validate(bad)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q, want debug|info|warn|error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text", "auto":
	default:
		bad("log-format", "%q, want json|text|auto", c.LogFormat)
	}
	return errors.Join(errs...)
}

func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func identifier(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Bind registers every field as a flag on fs, with c's values as defaults.
func (c *Config) Bind(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "RESP listen address")
	fs.StringVar(&c.AdminListen, "admin-listen", c.AdminListen, "HTTP admin address (/healthz /readyz /metrics /v1/status); empty disables")
	fs.Func("backends", "comma-separated Redis nodes host:port[,host:port…] (cluster mode: seeds an empty ring only)", func(s string) error {
		c.Backends = splitList(s)
		return nil
	})
	fs.StringVar(&c.SpannerDB, "spanner-db", c.SpannerDB, "cluster mode: projects/P/instances/I/databases/D (honours SPANNER_EMULATOR_HOST)")
	fs.StringVar(&c.HedgeAddr, "hedge-addr", c.HedgeAddr, "cluster mode: this pod's hedge host:port (port+1 is used too)")
	fs.StringVar(&c.LockTable, "lock-table", c.LockTable, "cluster mode: spindle lock table")
	fs.StringVar(&c.LogTable, "log-table", c.LogTable, "cluster mode: hedge log table")
	fs.StringVar(&c.LockName, "lock-name", c.LockName, "cluster mode: spindle lock name (one per jupiter cluster)")
	fs.StringVar(&c.RingTable, "ring-table", c.RingTable, "cluster mode: table holding the current ring")
	fs.StringVar(&c.HistoryTable, "history-table", c.HistoryTable, "cluster mode: table holding every ring version")
	fs.DurationVar(&c.PollInterval, "poll-interval", c.PollInterval, "cluster mode: how often to re-read the ring from Spanner")
	fs.DurationVar(&c.LockLease, "lock-lease", c.LockLease, "cluster mode: leader lock lease; a dead leader is replaced after about this long (min 2s)")
	fs.DurationVar(&c.MemberSync, "member-sync-interval", c.MemberSync, "cluster mode: hedge membership heartbeat interval (min 2s)")
	fs.StringVar(&c.Rebalance, "rebalance", c.Rebalance, "cluster mode: staged (ADD/REMOVE move keys online, nothing lost) or remap (switch the ring at once; moved keys miss)")
	fs.DurationVar(&c.MemberLease, "member-lease", c.MemberLease, "cluster mode: member registry lease; a pod silent this long no longer holds up a rebalance")
	fs.DurationVar(&c.FreezeTimeout, "rebalance-freeze-timeout", c.FreezeTimeout, "cluster mode: a freeze barrier taking longer goes back to prepare (aborted when one pod holds up 3 in a row, or after 3 minutes of retreats)")
	fs.Float64Var(&c.MigrateKeysPerSec, "migrate-keys-per-sec", c.MigrateKeysPerSec, "cluster mode: migrator keys/s per source node (0 = unlimited)")
	fs.Float64Var(&c.MigrateBytesPerSec, "migrate-bytes-per-sec", c.MigrateBytesPerSec, "cluster mode: migrator DUMP bytes/s per source node (0 = unlimited)")
	fs.IntVar(&c.MigrateInflight, "migrate-inflight", c.MigrateInflight, "cluster mode: migrator batches in flight to each destination node from all sources together, at most twice that on one source (more moves faster and makes clients of those nodes wait longer behind them)")
	fs.DurationVar(&c.MigrateTargetDelay, "migrate-target-delay", c.MigrateTargetDelay, "cluster mode: the migrator pauses between batches while PINGs to its nodes take this much longer than their usual round trip (0 = off)")
	fs.StringVar(&c.HashPrefix, "hash-prefix", c.HashPrefix, "prefix of the trailing hash-override argument; empty disables")
	fs.IntVar(&c.BackendConns, "backend-conns", c.BackendConns, "multiplexed connections per Redis node")
	fs.DurationVar(&c.BackendLinger, "backend-linger", c.BackendLinger, "while some node still owes replies, wait up to this long for them before writing to the others (0 = never)")
	fs.IntVar(&c.MaxDedicated, "max-dedicated-conns", c.MaxDedicated, "most connections per Redis node that clients hold for themselves (WATCH); past it such a command gets an error")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", c.DialTimeout, "Redis node dial timeout")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "Redis node reply timeout")
	fs.IntVar(&c.MaxClients, "max-clients", c.MaxClients, "maximum client connections (0 = unlimited)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close clients idle this long (0 = never)")
	fs.IntVar(&c.MaxArgBytes, "max-arg-bytes", c.MaxArgBytes, "largest argument accepted from a client")
	fs.IntVar(&c.MaxArgs, "max-args", c.MaxArgs, "most arguments accepted in one command")
	fs.IntVar(&c.MaxPipeline, "max-pipeline", c.MaxPipeline, "most commands of one client run as one batch; longer pipelines run in several (bounds buffered replies)")
	fs.DurationVar(&c.RebalanceHoldMax, "rebalance-hold-max", c.RebalanceHoldMax, "during a rebalance's freeze, the longest a write to a moving key is held before -TRYAGAIN (10ms..10s)")
	fs.DurationVar(&c.CapacityInterval, "capacity-interval", c.CapacityInterval, "how often every node is asked for INFO (JUPITER NODES capacity figures, jupiter_node_* metrics, ctl top); 0 = off")
	fs.BoolVar(&c.FleetHealth, "fleet-health", c.FleetHealth, "cluster mode: mark a node down on every pod once a quorum of pods cannot reach it (fail its keys fast, no remapping) and up once a quorum can; reports ride on the --capacity-interval exchange")
	fs.IntVar(&c.SlowlogSlowerThan, "slowlog-slower-than", c.SlowlogSlowerThan, "log commands at least this many microseconds through jupiter in its own SLOWLOG (0 = every command, negative = none)")
	fs.IntVar(&c.SlowlogMaxLen, "slowlog-max-len", c.SlowlogMaxLen, "entries the proxy's SLOWLOG keeps")
	fs.IntVar(&c.HotkeysSample, "hotkeys-sample", c.HotkeysSample, "feed one command in N to the hot-key sketch (JUPITER HOTKEYS); 0 = off")
	fs.DurationVar(&c.HotkeysHalfLife, "hotkeys-half-life", c.HotkeysHalfLife, "hot-key counts halve this often, so the ranking follows current traffic")
	fs.IntVar(&c.HotkeysMetrics, "hotkeys-metrics", c.HotkeysMetrics, "export the hottest N keys as jupiter_hotkey_score (0 = none; at most 64)")
	fs.BoolVar(&c.HotkeysMetricsNames, "hotkeys-metrics-names", c.HotkeysMetricsNames, "label jupiter_hotkey_score with the key itself (escaped, cut at 64 bytes) instead of a hash of it; keys are data: enable only where /metrics is as private as the keys")
	fs.IntVar(&c.BigkeysThreshold, "bigkeys-threshold", c.BigkeysThreshold, "list commands whose request or reply has at least this many bytes (JUPITER BIGKEYS); 0 = off")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on the graceful drain after SIGTERM")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "after SIGTERM, keep serving this long with /readyz failing before closing client connections at command boundaries")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug|info|warn|error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json|text|auto")
	c.bindSecurity(fs)
}

// ApplyEnv sets every flag not given on the command line from the
// environment variable JUPITER_<NAME> (upper case, dashes as underscores).
func ApplyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// EnvName is the environment variable for a flag.
func EnvName(flagName string) string {
	return "JUPITER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load parses args (flags, then environment) into a validated Config.
func Load(fs *flag.FlagSet, args []string) (Config, error) {
	c := Default()
	c.Bind(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := ApplyEnv(fs, os.Getenv); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := c.Security.resolveSecrets(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
