// Command dashrender draws jupiter's Grafana dashboard from a real run,
// without Grafana: it records the pods' /metrics pages during a run, then
// evaluates every panel's PromQL over the recording (a subset of PromQL:
// what the dashboard uses, see promql.go) and paints the panels where the
// dashboard's gridPos puts them, into a PNG.
//
//	dashrender record -targets pod1=127.0.0.1:9091,pod2=127.0.0.1:9092 -interval 1s -out run.jsonl
//	    (until SIGINT/SIGTERM, or -duration)
//	dashrender render -dashboard deploy/grafana/jupiter-dashboard.json -in run.jsonl -out docs/dashboard.png
//
// It is a tool for the docs (scripts/dashboard-render.sh runs the whole
// thing), not part of the jupiter binary. Grafana variables: $instance
// is every pod, $__rate_interval four scrape intervals (at least 4s).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashrender record|render [flags] (-h for each)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "record":
		err = record(os.Args[2:])
	case "render":
		err = render(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: record or render", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashrender:", err)
		os.Exit(1)
	}
}

// scrape is one /metrics page of one pod, a line of the recording.
type scrape struct {
	T        int64  `json:"t"` // unix ms
	Instance string `json:"instance"`
	Text     string `json:"text"`
}

func record(args []string) error {
	fs := flag.NewFlagSet("record", flag.ExitOnError)
	targets := fs.String("targets", "", "name=host:port of each pod's admin port, comma-separated")
	interval := fs.Duration("interval", time.Second, "time between scrapes")
	duration := fs.Duration("duration", 0, "stop after this long (0: at SIGINT/SIGTERM)")
	out := fs.String("out", "run.jsonl", "the recording (JSON lines)")
	_ = fs.Parse(args)
	type target struct{ name, addr string }
	var ts []target
	for _, t := range strings.Split(*targets, ",") {
		name, addr, ok := strings.Cut(t, "=")
		if !ok {
			return fmt.Errorf("-targets: %q is not name=host:port", t)
		}
		ts = append(ts, target{name, addr})
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	enc := json.NewEncoder(w)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	client := &http.Client{Timeout: *interval}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	n := 0
	for {
		now := time.Now()
		pages := make([]scrape, len(ts))
		var wg sync.WaitGroup
		for i, t := range ts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pages[i] = scrape{T: now.UnixMilli(), Instance: t.name}
				resp, err := client.Get("http://" + t.addr + "/metrics")
				if err != nil {
					return // a pod down: no page, as Prometheus would record
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				pages[i].Text = string(b)
			}()
		}
		wg.Wait()
		for _, p := range pages {
			if p.Text != "" {
				if err := enc.Encode(p); err != nil {
					return err
				}
			}
		}
		n++
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "dashrender: %d scrapes of %d pods in %s\n", n, len(ts), *out)
			return nil
		case <-tick.C:
		}
	}
}

// recording is a run loaded for evaluation.
type recording struct {
	db       *db
	times    []int64 // scrape rounds, unix ms
	interval int64   // ms, the median gap between rounds
}

func loadRecording(path string) (*recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pages []scrape
	dec := json.NewDecoder(f)
	for {
		var s scrape
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		pages = append(pages, s)
	}
	if len(pages) < 3 {
		return nil, fmt.Errorf("%s: %d scrapes; a picture needs a run", path, len(pages))
	}
	seen := map[int64]bool{}
	r := &recording{}
	for _, p := range pages {
		if !seen[p.T] {
			seen[p.T] = true
			r.times = append(r.times, p.T)
		}
	}
	gaps := make([]int64, 0, len(r.times))
	for i := 1; i < len(r.times); i++ {
		gaps = append(gaps, r.times[i]-r.times[i-1])
	}
	r.interval = median(gaps)
	r.db = newDB(r.interval * 3 / 2)
	for _, p := range pages {
		if err := parseExposition(r.db, p.Text, p.T, labels{"instance": p.Instance, "job": "jupiter"}); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 1000
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// expand substitutes the Grafana variables the dashboard uses.
func (r *recording) expand(expr string) string {
	ri := max(4*r.interval/1000, 4)
	return strings.NewReplacer("$__rate_interval", fmt.Sprintf("%ds", ri), "$instance", ".*", "${instance}", ".*").Replace(expr)
}

func render(args []string) error {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	dash := fs.String("dashboard", "deploy/grafana/jupiter-dashboard.json", "the Grafana dashboard")
	in := fs.String("in", "run.jsonl", "the recording")
	out := fs.String("out", "dashboard.png", "the PNG to write")
	width := fs.Int("width", 1800, "image width in pixels")
	title := fs.String("title", "", "a caption under the dashboard's title (e.g. what the run was)")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*dash)
	if err != nil {
		return err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("%s: %v", *dash, err)
	}
	r, err := loadRecording(*in)
	if err != nil {
		return err
	}
	img, err := draw(d, r, *width, *title)
	if err != nil {
		return err
	}
	return writePNG(*out, img)
}
