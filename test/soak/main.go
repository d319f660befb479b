// Command soak drives a running jupiter with many pipelined connections for a
// bounded time, optionally kills and restarts one backend halfway, and
// reports throughput, errors by kind, latency percentiles, and whether
// jupiter's goroutines and resident memory came back to their baseline.
//
//	go run ./test/soak -addr 127.0.0.1:6379 -admin 127.0.0.1:9090 -duration 2m \
//	    -conns 200 -pipeline 16 [-kill-pid PID] [-restart-cmd "…"]
//
// test/soak/run.sh starts three redis-servers and jupiter on loopback ports,
// runs this with a backend restart in the middle, and cleans up.
//
// Every pipeline mixes SET/GET/INCR/MGET/MSET/DEL/EXPIRE/HSET/LPUSH over a
// shared key space, and ends with a SET and GET of a key private to the
// connection, whose value must come back: a reply matched to the wrong
// request shows up as a "wrong value" error. Each command family has its own
// key prefix, so no WRONGTYPE errors are expected.
//
// Goroutines: go_goroutines from jupiter's /metrics before the load (idle,
// no client connected) and after the load once every soak connection is
// closed; PASS when the end is within -goroutine-tolerance of the start.
// Memory: process_resident_memory_bytes once the warm-up is over (the
// working set of the load) and at the end; PASS when the end is within
// -rss-tolerance (a fraction) of the warm level. A leak grows past both.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	addr, admin, password string
	duration, warmup      time.Duration
	conns, pipeline       int
	keys, valueSize       int
	killPID               int
	restartCmd            string
	restartAt             float64
	restartDelay          time.Duration
	timeout               time.Duration
	settle                time.Duration
	gTol                  int
	rssTol                float64
	report                time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:6379", "jupiter RESP address (loopback only)")
	flag.StringVar(&o.admin, "admin", "127.0.0.1:9090", "jupiter admin HTTP address, for /metrics (loopback only)")
	flag.StringVar(&o.password, "password", os.Getenv("SOAK_PASSWORD"), "AUTH password, if jupiter has --password (env SOAK_PASSWORD)")
	flag.DurationVar(&o.duration, "duration", 2*time.Minute, "how long to run the load")
	flag.DurationVar(&o.warmup, "warmup", 0, "warm-up before the memory baseline is taken (default 10% of -duration, 2s..15s)")
	flag.IntVar(&o.conns, "conns", 200, "client connections")
	flag.IntVar(&o.pipeline, "pipeline", 16, "commands per pipeline")
	flag.IntVar(&o.keys, "keys", 10000, "shared key space per command family")
	flag.IntVar(&o.valueSize, "value-size", 64, "bytes per value")
	flag.IntVar(&o.killPID, "kill-pid", 0, "backend pid to SIGKILL at -restart-at (then -restart-cmd restarts it)")
	flag.StringVar(&o.restartCmd, "restart-cmd", "", "shell command run at -restart-at (after -kill-pid and -restart-delay)")
	flag.Float64Var(&o.restartAt, "restart-at", 0.5, "when to kill/restart, as a fraction of -duration")
	flag.DurationVar(&o.restartDelay, "restart-delay", 2*time.Second, "outage between -kill-pid and -restart-cmd")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "client deadline for one pipeline")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "how long to wait at the end for goroutines to return")
	flag.IntVar(&o.gTol, "goroutine-tolerance", 20, "allowed go_goroutines above the baseline at the end")
	flag.Float64Var(&o.rssTol, "rss-tolerance", 0.5, "allowed RSS growth at the end over the warm level (fraction)")
	flag.DurationVar(&o.report, "report-every", 10*time.Second, "progress line interval")
	flag.Parse()
	if o.warmup == 0 {
		o.warmup = min(max(o.duration/10, 2*time.Second), 15*time.Second)
	}
	for _, a := range []string{o.addr, o.admin} {
		if err := loopbackOnly(a); err != nil {
			fatalf("%v", err)
		}
	}
	if o.conns < 1 || o.pipeline < 2 || o.keys < 1 || o.duration <= 0 {
		fatalf("bad -conns/-pipeline/-keys/-duration")
	}
	os.Exit(run(o))
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", a...)
	os.Exit(2)
}

// loopbackOnly refuses to load anything but this machine.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: soak only loads this machine", addr)
	}
	return nil
}

// ---- results -----------------------------------------------------------------

// hist is a log-linear latency histogram (16 sub-buckets per power of two
// of nanoseconds, ≤ 6% error), cheap enough to update per pipeline.
type hist struct {
	mu sync.Mutex
	b  [64 * 16]uint64
	n  uint64
	mx time.Duration
}

func bucket(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1
	if e < 4 {
		return int(v)
	}
	return e*16 + int((v>>(e-4))&15)
}

func bucketValue(i int) time.Duration {
	e, s := i/16, i%16
	if e < 4 {
		return time.Duration(i)
	}
	return time.Duration((uint64(16+s) << (e - 4)))
}

func (h *hist) add(d time.Duration) {
	h.mu.Lock()
	h.b[bucket(d)]++
	h.n++
	h.mx = max(h.mx, d)
	h.mu.Unlock()
}

func (h *hist) quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.b {
		seen += c
		if seen >= want {
			return bucketValue(i)
		}
	}
	return h.mx
}

type errStats struct {
	mu     sync.Mutex
	kinds  map[string]uint64
	first  map[string]time.Time
	last   map[string]time.Time
	sample map[string]string
}

var digits = regexp.MustCompile(`[0-9]+`)

// kind groups an error: numbers (ports, counts, addresses) are folded.
func kind(msg string) string {
	msg = strings.TrimSpace(msg)
	if len(msg) > 160 {
		msg = msg[:160]
	}
	return digits.ReplaceAllString(msg, "N")
}

func (e *errStats) add(msg string, at time.Time) {
	k := kind(msg)
	e.mu.Lock()
	if e.kinds == nil {
		e.kinds, e.first, e.last, e.sample = map[string]uint64{}, map[string]time.Time{}, map[string]time.Time{}, map[string]string{}
	}
	if e.kinds[k] == 0 {
		e.first[k], e.sample[k] = at, msg
	}
	e.kinds[k]++
	e.last[k] = at
	e.mu.Unlock()
}

type results struct {
	cmds, pipes, errs, connErrs, wrong atomic.Uint64
	lat                                hist
	errs2                              errStats
	lastErr                            atomic.Int64 // unix nanos of the last error of any kind
}

// ---- load --------------------------------------------------------------------

func run(o options) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	fmt.Printf("soak: %s (admin %s), %v, %d connections × pipelines of %d, %d keys/family, %dB values\n",
		o.addr, o.admin, o.duration, o.conns, o.pipeline, o.keys, o.valueSize)

	m0, err := scrape(o.admin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: /metrics: %v\n", err)
		return 2
	}
	gBase := m0["go_goroutines"]
	rssStart := m0["process_resident_memory_bytes"]
	fmt.Printf("baseline: go_goroutines %.0f, rss %s (idle, before the load)\n", gBase, mib(rssStart))

	var res results
	start := time.Now()
	end := start.Add(o.duration)
	lctx, lcancel := context.WithDeadline(ctx, end)
	defer lcancel()
	var wg sync.WaitGroup
	for i := 0; i < o.conns; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			worker(lctx, o, id, &res)
		}(i)
	}

	var rssWarm, rssPeak, gPeak float64
	var (
		restartMu   sync.Mutex // restartInfo and restartedAt, also set by the restart goroutine
		restartInfo []string
		restartedAt time.Time
		killedAt    time.Time
		restartDone chan struct{}
	)
	restartDue := start.Add(time.Duration(float64(o.duration) * o.restartAt))
	hook := o.killPID > 0 || o.restartCmd != ""
	warmDue := start.Add(o.warmup)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastReport, lastCmds, lastErrs := start, uint64(0), uint64(0)
loop:
	for {
		select {
		case <-lctx.Done():
			break loop
		case now := <-tick.C:
			m, err := scrape(o.admin)
			if err == nil {
				gPeak = max(gPeak, m["go_goroutines"])
				rssPeak = max(rssPeak, m["process_resident_memory_bytes"])
				if rssWarm == 0 && now.After(warmDue) {
					rssWarm = m["process_resident_memory_bytes"]
					fmt.Printf("%5.0fs warm: rss %s, go_goroutines %.0f\n", now.Sub(start).Seconds(), mib(rssWarm), m["go_goroutines"])
				}
			}
			if hook && killedAt.IsZero() && now.After(restartDue) {
				killedAt = now
				if o.killPID > 0 {
					err := syscall.Kill(o.killPID, syscall.SIGKILL)
					msg := fmt.Sprintf("SIGKILL pid %d at %.1fs: %v", o.killPID, now.Sub(start).Seconds(), errOrOK(err))
					fmt.Println("      " + msg)
					restartMu.Lock()
					restartInfo = append(restartInfo, msg)
					restartMu.Unlock()
				}
				if o.restartCmd != "" {
					restartDone = make(chan struct{})
					go func() {
						defer close(restartDone)
						if o.killPID > 0 {
							time.Sleep(o.restartDelay)
						}
						t := time.Now()
						out, err := exec.Command("sh", "-c", o.restartCmd).CombinedOutput()
						msg := fmt.Sprintf("restart-cmd at %.1fs: %v %s", t.Sub(start).Seconds(), errOrOK(err), strings.TrimSpace(string(out)))
						fmt.Println("      " + msg)
						restartMu.Lock()
						restartedAt = t
						restartInfo = append(restartInfo, msg)
						restartMu.Unlock()
					}()
				}
			}
			if now.Sub(lastReport) >= o.report {
				c, e := res.cmds.Load(), res.errs.Load()+res.connErrs.Load()+res.wrong.Load()
				secs := now.Sub(lastReport).Seconds()
				fmt.Printf("%5.0fs %9.0f ops/s %7.0f err/s  go_goroutines %5.0f  rss %s\n", now.Sub(start).Seconds(),
					float64(c-lastCmds)/secs, float64(e-lastErrs)/secs, m["go_goroutines"], mib(m["process_resident_memory_bytes"]))
				lastReport, lastCmds, lastErrs = now, c, e
			}
		}
	}
	wg.Wait() // workers close their connections
	elapsed := time.Since(start)
	rssLoaded := rssPeak

	if restartDone != nil {
		select {
		case <-restartDone:
		case <-time.After(30 * time.Second):
			fmt.Println("restart-cmd still running 30s after the load ended")
		}
	}

	// Settle: every connection is closed; wait (at least 3s, at most
	// -settle) for the goroutines to come back within the tolerance.
	var gEnd, rssEnd float64
	settleStart := time.Now()
	for {
		m, err := scrape(o.admin)
		waited := time.Since(settleStart)
		if err == nil {
			gEnd, rssEnd = m["go_goroutines"], m["process_resident_memory_bytes"]
			if gEnd <= gBase+float64(o.gTol) && waited >= 3*time.Second {
				break
			}
		}
		if waited >= o.settle {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if rssWarm == 0 {
		rssWarm = rssLoaded
	}

	// ---- report ----
	fmt.Println()
	fmt.Println("==== soak report ====")
	cmds := res.cmds.Load()
	fmt.Printf("duration        %v (%d connections, pipeline %d)\n", elapsed.Round(time.Millisecond), o.conns, o.pipeline)
	fmt.Printf("commands        %d (%d pipelines)\n", cmds, res.pipes.Load())
	fmt.Printf("throughput      %.0f ops/s\n", float64(cmds)/elapsed.Seconds())
	fmt.Printf("pipeline latency p50 %v  p99 %v  p99.9 %v  max %v\n", rd(res.lat.quantile(0.5)), rd(res.lat.quantile(0.99)),
		rd(res.lat.quantile(0.999)), rd(res.lat.mx))
	fmt.Printf("errors          %d error replies, %d connection errors, %d wrong values\n", res.errs.Load(), res.connErrs.Load(), res.wrong.Load())
	type kc struct {
		k string
		n uint64
	}
	res.errs2.mu.Lock()
	var ks []kc
	for k, n := range res.errs2.kinds {
		ks = append(ks, kc{k, n})
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].n > ks[j].n })
	for _, k := range ks {
		fmt.Printf("  %8d  %s   [%.1fs..%.1fs]\n", k.n, res.errs2.sample[k.k], res.errs2.first[k.k].Sub(start).Seconds(), res.errs2.last[k.k].Sub(start).Seconds())
	}
	res.errs2.mu.Unlock()
	restartMu.Lock()
	for _, s := range restartInfo {
		fmt.Println("backend restart " + s)
	}
	restartedAtV := restartedAt
	restartMu.Unlock()
	pass := true
	if hook {
		if killedAt.IsZero() {
			fmt.Println("backend restart NOT DONE (duration too short?)")
		} else if le := res.lastErr.Load(); le > 0 && !restartedAtV.IsZero() {
			rec := time.Unix(0, le).Sub(restartedAtV)
			if rec < 0 {
				fmt.Printf("recovery        no errors after the restart command\n")
			} else {
				fmt.Printf("recovery        last error %.2fs after the restart command\n", rec.Seconds())
			}
			if time.Unix(0, le).After(end.Add(-5*time.Second)) && rec > 0 {
				fmt.Println("recovery        FAIL: errors continued to the end of the run")
				pass = false
			}
		}
	}
	if res.wrong.Load() > 0 {
		fmt.Println("correctness     FAIL: replies with the wrong value (a reply matched to another request)")
		pass = false
	}
	gOK := gEnd <= gBase+float64(o.gTol)
	fmt.Printf("goroutines      baseline %.0f  peak %.0f  end %.0f  (tolerance +%d)  %s\n", gBase, gPeak, gEnd, o.gTol, verdict(gOK))
	rssOK := rssEnd <= rssWarm*(1+o.rssTol)
	fmt.Printf("rss             start %s  warm %s  peak %s  end %s  (tolerance +%.0f%% of warm)  %s\n",
		mib(rssStart), mib(rssWarm), mib(rssPeak), mib(rssEnd), o.rssTol*100, verdict(rssOK))
	pass = pass && gOK && rssOK && cmds > 0
	fmt.Printf("RESULT          %s\n", verdict(pass))
	if !pass {
		return 1
	}
	return 0
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func rd(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d > 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}

func mib(b float64) string { return fmt.Sprintf("%.1fMiB", b/(1<<20)) }

// worker runs pipelines on one connection until ctx ends, reconnecting
// after a connection error.
func worker(ctx context.Context, o options, id int, res *results) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	value := strings.Repeat(string(rune('a'+id%26)), o.valueSize)
	private := fmt.Sprintf("soak:own:%d", id)
	var nc net.Conn
	var br *bufio.Reader
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	buf := make([]byte, 0, 4096)
	for seq := 0; ctx.Err() == nil; seq++ {
		if nc == nil {
			var err error
			nc, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", o.addr)
			if err != nil {
				if ctx.Err() == nil {
					res.connErrs.Add(1)
					res.errs2.add("dial: "+err.Error(), time.Now())
					res.lastErr.Store(time.Now().UnixNano())
					time.Sleep(200 * time.Millisecond)
				}
				continue
			}
			br = bufio.NewReaderSize(nc, 32<<10)
			if o.password != "" {
				_ = nc.SetDeadline(time.Now().Add(o.timeout))
				if _, err := nc.Write(appendCmd(nil, "AUTH", o.password)); err == nil {
					if r, err := readReply(br); err != nil || r != "+OK" {
						fatalf("AUTH refused: %q %v", r, err)
					}
				}
			}
		}
		// Build the pipeline: random commands, then the private check.
		buf = buf[:0]
		n := o.pipeline - 2
		for i := 0; i < n; i++ {
			buf = appendRandom(buf, rng, o.keys, value)
		}
		want := strconv.Itoa(id) + ":" + strconv.Itoa(seq)
		buf = appendCmd(buf, "SET", private, want)
		buf = appendCmd(buf, "GET", private)
		t0 := time.Now()
		dl := t0.Add(o.timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		_ = nc.SetDeadline(dl)
		var err error
		setFailed := false
		if _, err = nc.Write(buf); err == nil {
			for i := 0; i < o.pipeline; i++ {
				var r string
				if r, err = readReply(br); err != nil {
					break
				}
				res.cmds.Add(1)
				if r != "" && r[0] == '-' {
					res.errs.Add(1)
					now := time.Now()
					res.errs2.add(r[1:], now)
					res.lastErr.Store(now.UnixNano())
					setFailed = setFailed || i == o.pipeline-2
					continue
				}
				// The GET of the private key must return this pipeline's
				// SET (unless that SET failed): anything else is a reply
				// matched to the wrong request.
				if i == o.pipeline-1 && !setFailed && r != want {
					res.wrong.Add(1)
					res.errs2.add(fmt.Sprintf("WRONG VALUE for %s: got %.40q want %q", private, r, want), time.Now())
				}
			}
		}
		if err != nil {
			if d, ok := ctx.Deadline(); ctx.Err() != nil || ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
				break // the run is over: not an error
			}
			res.connErrs.Add(1)
			now := time.Now()
			res.errs2.add("connection: "+err.Error(), now)
			res.lastErr.Store(now.UnixNano())
			nc.Close()
			nc = nil
			continue
		}
		res.pipes.Add(1)
		res.lat.add(time.Since(t0))
	}
}

// appendRandom appends one random command of the mix.
func appendRandom(b []byte, rng *rand.Rand, keys int, value string) []byte {
	k := func(prefix string) string { return prefix + strconv.Itoa(rng.IntN(keys)) }
	switch p := rng.IntN(100); {
	case p < 25:
		return appendCmd(b, "GET", k("soak:s:"))
	case p < 45:
		return appendCmd(b, "SET", k("soak:s:"), value)
	case p < 55:
		return appendCmd(b, "INCR", k("soak:c:"))
	case p < 63:
		return appendCmd(b, "MGET", k("soak:s:"), k("soak:s:"), k("soak:s:"), k("soak:s:"))
	case p < 69:
		return appendCmd(b, "MSET", k("soak:s:"), value, k("soak:s:"), value, k("soak:s:"), value)
	case p < 74:
		return appendCmd(b, "DEL", k("soak:s:"), k("soak:l:"))
	case p < 80:
		return appendCmd(b, "EXPIRE", k("soak:s:"), "30")
	case p < 90:
		return appendCmd(b, "HSET", k("soak:h:"), "f"+strconv.Itoa(rng.IntN(8)), value)
	case p < 97:
		return appendCmd(b, "LPUSH", k("soak:l:"), value)
	default:
		// keeps lists bounded
		return appendCmd(b, "EXPIRE", k("soak:l:"), "10")
	}
}

func appendCmd(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// readReply reads one RESP2 reply and returns it flattened: simple strings
// and errors with their prefix, bulk strings as their body, "(nil)" for
// nulls, integers as ":N", arrays as "*N".
func readReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 {
		return "", fmt.Errorf("short reply line %q", line)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+', '-', ':':
		return string(line[0]) + body, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return "(nil)", nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad array length %q", body)
		}
		for i := 0; i < n; i++ {
			if _, err := readReply(br); err != nil {
				return "", err
			}
		}
		return "*" + body, nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// scrape reads jupiter's /metrics (unlabelled samples only).
func scrape(admin string) (map[string]float64, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}
