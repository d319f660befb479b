package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/redis/go-redis/v9"
)

const ctlUsage = `usage: jupiter ctl [--addr host:port] [--user admin --password P] [--timeout D] <command>

Talks to any jupiter pod over its RESP port (JUPITER … commands). In cluster
mode the pod forwards changes to the leader; they succeed once it accepted.
With --admin-password set on the pods, changes need --user admin and that
password (or JUPITER_CTL_PASSWORD in the environment, kept out of ps).

commands:
  status [--watch [--interval 1s]]
                          this pod's view: self, leader, ring_version, stage, nodes…
                          --watch: poll until the stage is stable, printing a
                          progress bar; exits 0 once stable, 1 on errors or when
                          --timeout (default 1h with --watch) runs out
  nodes                   one line per ring node: addr weight slots up, then
                          its capacity figures (memory, keys, hits, ops/s…)
  top [--once] [--interval 1s]
                          live view of the nodes' capacity, nearest to full
                          first (used/maxmemory, else share of the keys),
                          redrawn every interval until Ctrl-C; --once prints
                          one frame
  add <host:port> [w]     add a Redis node (weight w, default 1)
  remove <host:port>      remove a Redis node
  weight <host:port> <w>  change a node's weight
  plan add <host:port> [w] | plan remove <host:port> | plan weight <host:port> <w>
                          dry run: slots and (estimated) keys each node would
                          send and receive; changes nothing
  rebalance [status]      the running rebalance: stage, moved/total keys, rate, ETA
  rebalance abort|pause|resume
                          control the running rebalance (admin)
  slowlog [n|-1] | len | reset
                          this pod's slow log, newest first: one line per
                          command with its time through jupiter, the node
                          wait, the proxy's time and the nodes
  slowlog nodes [get [n]] | len | reset
                          the nodes' own slow logs, merged
  hotkeys [fleet|pod] [count|bytes] [n] | reset
                          hottest keys (sampled, estimated): the fleet's,
                          every pod's merged by the leader (default; in
                          standalone mode this pod's), or this pod's; reset
                          forgets this pod's
  bigkeys [n] | reset     this pod's biggest requests and replies by key

Exit status: 0 on success, 1 when the pod refused the request (its -ERR
message is printed) or could not be reached, 2 on a usage error.

flags:
`

// runCtl is `jupiter ctl`: a RESP admin client.
func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jupiter ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:6379", "RESP address (host:port) of any jupiter pod")
	user := fs.String("user", "", `AUTH user: "admin" for ring changes when the pods have --admin-password`)
	password := fs.String("password", "", "AUTH password (default $JUPITER_CTL_PASSWORD)")
	timeout := fs.Duration("timeout", 15*time.Second, "bound on the whole request (a change waits for the leader); with --watch default 1h; top runs until Ctrl-C unless given")
	watch := fs.Bool("watch", false, "status: poll until the stage is stable, with a progress bar")
	interval := fs.Duration("interval", time.Second, "status --watch, top: time between polls")
	once := fs.Bool("once", false, "top: print one frame and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the command and its arguments; a
	// negative number (slowlog -1) is an argument, not a flag.
	var pos []string
	for {
		if len(args) > 0 && len(pos) > 0 && negativeInt(args[0]) {
			pos, args = append(pos, args[0]), args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	sub := strings.ToLower(pos[0])
	rest := pos[1:]
	argc := map[string][2]int{"status": {0, 0}, "nodes": {0, 0}, "add": {1, 2}, "remove": {1, 1}, "weight": {2, 2},
		"plan": {2, 3}, "rebalance": {0, 1}, "top": {0, 0}, "slowlog": {0, 3}, "hotkeys": {0, 3}, "bigkeys": {0, 1}}
	if sub == "help" {
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	n, ok := argc[sub]
	if !ok {
		fmt.Fprintf(stderr, "jupiter ctl: unknown command %q\n", pos[0])
		fs.Usage()
		return 2
	}
	if len(rest) < n[0] || len(rest) > n[1] {
		fmt.Fprintf(stderr, "jupiter ctl: wrong number of arguments for %s\n", sub)
		fs.Usage()
		return 2
	}
	if msg := checkCtlArgs(sub, rest, *watch, *once, *interval); msg != "" {
		fmt.Fprintf(stderr, "jupiter ctl: %s\n", msg)
		fs.Usage()
		return 2
	}
	timeoutSet := false
	fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
	readTimeout := *timeout
	if *watch {
		if !timeoutSet {
			*timeout = time.Hour
		}
		readTimeout = min(*timeout, 15*time.Second)
	}
	live := sub == "top" && !*once // runs until Ctrl-C (or --timeout when given)
	if live {
		readTimeout = min(*timeout, watchPollTimeout)
	}

	redis.SetLogger(quietLogger{}) // errors are reported below, once
	if *password == "" {
		*password = os.Getenv("JUPITER_CTL_PASSWORD")
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:            *addr,
		Username:        *user,
		Password:        *password,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1, // a change must not be sent twice behind the operator's back
		PoolSize:        1,
		DialTimeout:     5 * time.Second,
		DialerRetries:   1,
		ReadTimeout:     readTimeout,
		WriteTimeout:    5 * time.Second,
	})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	if live {
		cancel()
		sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ctx, cancel = sctx, stop
		if timeoutSet {
			ctx, cancel = context.WithTimeout(sctx, *timeout)
		}
	}
	defer cancel()

	if sub == "top" {
		return runTop(ctx, rdb, *addr, *interval, *once, stdout, stderr)
	}
	if *watch {
		return watchStatus(ctx, rdb, *addr, *interval, *timeout, stdout, stderr)
	}
	cmd := []any{"JUPITER", strings.ToUpper(sub)}
	for _, a := range rest {
		cmd = append(cmd, a)
	}
	if sub == "rebalance" {
		cmd = []any{"JUPITER", "REBALANCE", "STATUS"}
		if len(rest) == 1 {
			cmd[2] = strings.ToUpper(rest[0])
		}
	}
	if sub == "plan" {
		cmd[2] = strings.ToUpper(rest[0])
	}
	res := rdb.Do(ctx, cmd...)
	if err := res.Err(); err != nil {
		reportErr(stderr, *addr, err)
		return 1
	}
	switch v := res.Val().(type) {
	case string:
		text := strings.TrimRight(strings.ReplaceAll(v, "\r\n", "\n"), "\n")
		switch {
		case sub == "plan":
			p, err := admin.ParsePlan(text)
			if err != nil {
				fmt.Fprintln(stdout, text)
				break
			}
			printPlan(stdout, p, strings.ToLower(rest[0]), rest[1])
		case sub == "rebalance" && cmd[2] == "STATUS":
			fmt.Fprintln(stdout, text)
			if st, err := admin.ParseRebalance(text); err == nil && st.Stage != admin.StageStable {
				fmt.Fprintln(stdout, progressLine(st))
			}
		default:
			fmt.Fprintln(stdout, text)
		}
	case []any:
		for _, e := range v {
			if entry, ok := e.([]any); ok {
				fmt.Fprintln(stdout, slowlogLine(entry)) // slowlog nodes: Redis's entries
				continue
			}
			fmt.Fprintln(stdout, e)
		}
	default:
		fmt.Fprintln(stdout, v)
	}
	return 0
}

// negativeInt reports whether s is a negative decimal integer.
func negativeInt(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil && strings.HasPrefix(s, "-")
}

// slowlogLine renders one entry of a node's SLOWLOG GET (id, unix time,
// microseconds, arguments, client address, client name) as a line like
// JUPITER SLOWLOG's.
func slowlogLine(e []any) string {
	var b strings.Builder
	for i, k := range []string{"id", "time", "duration_us"} {
		if i < len(e) {
			fmt.Fprintf(&b, "%s=%v ", k, e[i])
		}
	}
	if len(e) >= 6 {
		fmt.Fprintf(&b, "client=%v name=%v ", e[4], e[5])
	}
	b.WriteString("cmd=")
	if len(e) > 3 {
		if args, ok := e[3].([]any); ok {
			for i, a := range args {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(admin.Quote(fmt.Sprint(a)))
			}
		}
	}
	return b.String()
}

// checkCtlArgs validates what the argument counts cannot ("" when fine).
func checkCtlArgs(sub string, rest []string, watch, once bool, interval time.Duration) string {
	if watch && sub != "status" {
		return "--watch applies to status only"
	}
	if once && sub != "top" {
		return "--once applies to top only"
	}
	if (watch || sub == "top") && interval <= 0 {
		return "--interval must be positive"
	}
	switch sub {
	case "plan":
		op := strings.ToLower(rest[0])
		n := map[string][2]int{"add": {1, 2}, "remove": {1, 1}, "weight": {2, 2}}[op]
		if n == [2]int{} {
			return fmt.Sprintf("plan: unknown change %q (want add, remove or weight)", rest[0])
		}
		if k := len(rest) - 1; k < n[0] || k > n[1] {
			return "wrong number of arguments for plan " + op
		}
	case "rebalance":
		if len(rest) == 1 {
			switch strings.ToLower(rest[0]) {
			case "status", admin.ActionAbort, admin.ActionPause, admin.ActionResume:
			default:
				return fmt.Sprintf("rebalance: unknown action %q (want status, abort, pause or resume)", rest[0])
			}
		}
	}
	return ""
}

func reportErr(stderr io.Writer, addr string, err error) {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		fmt.Fprintf(stderr, "jupiter ctl: %s\n", err)
	} else {
		fmt.Fprintf(stderr, "jupiter ctl: %s: %v\n", addr, err)
	}
}

// watchPollTimeout bounds one poll of status --watch; watchMaxFails is how
// many polls in a row may fail (pod restarting, leader changing) before
// the watch gives up.
const (
	watchPollTimeout = 10 * time.Second
	watchMaxFails    = 3
)

// watchStatus is `status --watch`: it prints JUPITER STATUS, then one
// progress line per poll while the stage is not stable, and the status
// again once it is. 0 once stable; 1 on a refusal, when the pod cannot be
// reached (at the first poll, or watchMaxFails polls in a row) or when ctx
// (--timeout) ends first.
func watchStatus(ctx context.Context, rdb *redis.Client, addr string, interval, timeout time.Duration,
	stdout, stderr io.Writer) int {
	fails, polls := 0, 0
	stage := ""
	for {
		pctx, cancel := context.WithTimeout(ctx, watchPollTimeout)
		text, err := rdb.Do(pctx, "JUPITER", "STATUS").Text()
		cancel()
		polls++
		switch {
		case err != nil && ctx.Err() != nil:
			fmt.Fprintf(stderr, "jupiter ctl: gave up after %s: stage is still %q\n", timeout, stage)
			return 1
		case err != nil:
			var rerr redis.Error
			fails++
			if errors.As(err, &rerr) || polls == 1 || fails >= watchMaxFails {
				reportErr(stderr, addr, err)
				return 1
			}
			fmt.Fprintf(stderr, "jupiter ctl: %s: %v (retrying)\n", addr, err)
		default:
			fails = 0
			text = strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
			st := rebalanceFromStatus(text)
			stage = st.Stage
			if polls == 1 || st.Stage == admin.StageStable {
				fmt.Fprintln(stdout, text)
			}
			if st.Stage == admin.StageStable {
				return 0
			}
			fmt.Fprintln(stdout, progressLine(st))
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			fmt.Fprintf(stderr, "jupiter ctl: gave up after %s: stage is still %q\n", timeout, stage)
			return 1
		case <-t.C:
		}
	}
}

// rebalanceFromStatus reads the stage and the rebalance_* lines of JUPITER
// STATUS (a pod without them gives a stage and unknown progress).
func rebalanceFromStatus(text string) admin.RebalanceStatus {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		if k == "stage" {
			b.WriteString("stage:" + v + "\n")
		} else if k, ok := strings.CutPrefix(k, "rebalance_"); ok {
			b.WriteString(k + ":" + v + "\n")
		}
	}
	st, err := admin.ParseRebalance(b.String())
	if err != nil && st.Stage == "" {
		st.Stage = "unknown"
	}
	return st
}

// progressBarWidth is the number of cells in progressLine's bar.
const progressBarWidth = 20

// progressLine renders a rebalance's progress on one line, e.g.
// "migrating [#########...........] 48% 9600/20000 keys 3200 keys/s ETA 3s".
func progressLine(st admin.RebalanceStatus) string {
	var b strings.Builder
	b.WriteString(st.Stage)
	if st.Epoch != 0 {
		fmt.Fprintf(&b, " epoch %d", st.Epoch)
	}
	b.WriteString(" ")
	if st.TotalKeys > 0 {
		frac := min(float64(st.MovedKeys)/float64(st.TotalKeys), 1)
		if frac < 0 {
			frac = 0
		}
		n := int(frac * progressBarWidth)
		fmt.Fprintf(&b, "[%s%s] %d%% %d/%d keys", strings.Repeat("#", n), strings.Repeat(".", progressBarWidth-n),
			int(frac*100), st.MovedKeys, st.TotalKeys)
	} else {
		fmt.Fprintf(&b, "[%s] ?%% %d/? keys", strings.Repeat(".", progressBarWidth), st.MovedKeys)
	}
	fmt.Fprintf(&b, " %.0f keys/s", max(st.KeysPerSec, 0))
	if st.ETASeconds < 0 {
		b.WriteString(" ETA ?")
	} else {
		b.WriteString(" ETA " + time.Duration(st.ETASeconds*float64(time.Second)).Round(time.Second).String())
	}
	if st.Paused {
		b.WriteString(" (paused)")
	}
	if st.Errors > 0 {
		fmt.Fprintf(&b, " errors=%d", st.Errors)
		if st.LastError != "" {
			b.WriteString(" last: " + st.LastError)
		}
	}
	return b.String()
}

// printPlan renders a dry run as a table: per node the slots now → after,
// slots and estimated keys out and in, then the totals.
func printPlan(w io.Writer, p admin.PlanResult, op, addr string) {
	fmt.Fprintf(w, "plan: %s (against ring version %d; nothing was changed)\n\n", p.Change, p.RingVersion)
	rows := [][]string{{"NODE", "SLOTS NOW", "", "AFTER", "OUT", "IN", "KEYS NOW", "KEYS OUT", "KEYS IN", ""}}
	for _, n := range p.Nodes {
		note := ""
		switch {
		case n.Addr == addr && op == "add":
			note = "(new)"
		case n.Addr == addr && op == "remove":
			note = "(removed)"
		case n.Addr == addr:
			note = "(reweighted)"
		}
		rows = append(rows, []string{n.Addr, strconv.Itoa(n.SlotsNow), "→", strconv.Itoa(n.SlotsAfter),
			strconv.Itoa(n.SlotsOut), strconv.Itoa(n.SlotsIn), count(n.KeysNow), count(n.KeysOut), count(n.KeysIn), note})
	}
	// The node and note columns align left, the numbers right.
	var b strings.Builder
	writeTable(&b, rows, map[int]bool{0: true, 2: true, 9: true})
	_, _ = io.WriteString(w, b.String())
	keys := "keys unknown (no node answered DBSIZE)"
	if p.MovingKeys >= 0 {
		keys = fmt.Sprintf("~%d keys", p.MovingKeys)
	}
	fmt.Fprintf(w, "\nmoving: %d of %d slots (%.1f%%), %s\n", p.MovingSlots, ring.Slots,
		float64(p.MovingSlots)*100/float64(ring.Slots), keys)
}

// count renders a key count, "?" when unknown (-1).
func count(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// quietLogger silences go-redis's own log lines (dial retries).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
