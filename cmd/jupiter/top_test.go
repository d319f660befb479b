package main

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/redis/go-redis/v9"
)

type fixedFigures struct{ figs []capacity.Figures }

func (f fixedFigures) Snapshot() []capacity.Figures { return f.figs }
func (f fixedFigures) Fleet() capacity.Fleet {
	return capacity.Fleet{Pods: 2, At: time.Now().Add(-1500 * time.Millisecond)}
}

// figures: full is the memory ratio when max > 0, else the key share.
func figures(addr string, used, max int64, keyShare float64) capacity.Figures {
	f := capacity.Figures{Addr: addr, Info: capacity.ParseInfo("used_memory:" + itoa64(used) + "\nmaxmemory:" + itoa64(max) +
		"\nrole:master\n# Keyspace\n"), KeyShare: keyShare, SlotShare: 0.25, HitRatio: -1, PodOpsPerSec: 10,
		FleetOpsPerSec: 20, InfoAgeMs: 800}
	f.MemoryRatio = f.Info.MemoryRatio()
	return f
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// TestCtlTopOnce: one frame, nodes nearest to full first — by used /
// maxmemory where the node has one, else by key share; a node whose
// figures are unknown comes last.
func TestCtlTopOnce(t *testing.T) {
	addrs := []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", "10.0.0.4:6379", "10.0.0.5:6379"}
	var nodes []ring.Node
	for _, a := range addrs {
		nodes = append(nodes, ring.Node{Addr: a, Weight: 1})
	}
	r, err := ring.New(7, nodes)
	if err != nil {
		t.Fatal(err)
	}
	unknown := capacity.Figures{Addr: addrs[4], Info: capacity.ParseInfo(""), KeyShare: -1, MemoryRatio: -1,
		HitRatio: -1, PodOpsPerSec: -1, FleetOpsPerSec: -1, InfoAgeMs: -1}
	src := fixedFigures{figs: []capacity.Figures{
		figures(addrs[0], 10<<20, 100<<20, 0.5), // 10% of its memory, but half the keys: by memory, 10%
		figures(addrs[1], 90<<20, 100<<20, 0.1), // 90%: fullest
		figures(addrs[2], 5<<20, 0, 0.4),        // no maxmemory: by keys, 40%
		figures(addrs[3], 1<<20, 0, 0.0),        // empty: 0%
		unknown,
	}}
	ctl := &admin.Local{Router: &testRouter{r: r}, Self: "pod-1:6379", Capacity: src}
	addr := serveRESP(t, admin.Handler{C: ctl}, "")
	code, out, errs := runCtlT("--addr", addr, "top", "--once")
	if code != 0 {
		t.Fatalf("ctl top --once = %d %s", code, errs)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("--once must not clear the screen: %q", out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.Contains(lines[0], "ring v7 stable  5 nodes  fleet: 2 pod(s), 1.5s old") {
		t.Errorf("header %q", lines[0])
	}
	var order []string
	for _, l := range lines[3:] {
		order = append(order, strings.Fields(l)[0])
	}
	want := []string{addrs[1], addrs[2], addrs[0], addrs[3], addrs[4]}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("order %v, want %v\n%s", order, want, out)
	}
	for i, part := range []string{"90.0%  mem", "40.0%  keys", "10.0%  mem", "0.0%  keys", "?"} {
		if !strings.Contains(lines[3+i], part) {
			t.Errorf("row %d %q lacks %q", i, lines[3+i], part)
		}
	}
	if f := strings.Fields(lines[3]); f[3] != "90.0M" || f[4] != "100.0M" || strings.Fields(lines[4])[4] != "none" ||
		!strings.HasSuffix(lines[7], "never") || strings.Fields(lines[7])[2] != "?" {
		t.Errorf("memory columns:\n%s", out)
	}

	// A pod without capacity figures (--capacity-interval 0) still shows its nodes.
	ctl.Capacity = nil
	code, out, _ = runCtlT("--addr", addr, "top", "--once")
	if code != 0 || !strings.Contains(out, "--capacity-interval 0") || !strings.Contains(out, addrs[0]) {
		t.Errorf("top without figures = %d\n%s", code, out)
	}
	// Unreachable pod: --once fails.
	if code, _, errs := runCtlT("--addr", "127.0.0.1:1", "--timeout", "2s", "top", "--once"); code != 1 || errs == "" {
		t.Errorf("top --once on a dead address = %d %q", code, errs)
	}
}

// TestCtlTopLive: without --once, frames are redrawn (ANSI clear) every
// interval until the context ends.
func TestCtlTopLive(t *testing.T) {
	r, _ := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379", Weight: 1}})
	ctl := &admin.Local{Router: &testRouter{r: r}, Self: "p", Capacity: fixedFigures{figs: []capacity.Figures{figures("10.0.0.1:6379", 1, 2, 1)}}}
	addr := serveRESP(t, admin.Handler{C: ctl}, "")
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() { done <- runTop(ctx, rdb, addr, 100*time.Millisecond, false, pw, io.Discard); pw.Close() }()
	frames := 0
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), clearScreen+"jupiter top") {
			frames++
		}
	}
	if code := <-done; code != 0 || frames < 4 || frames > 7 {
		t.Errorf("live top: exit %d, %d frames in 550ms at 100ms", code, frames)
	}
}

func TestBytesIEC(t *testing.T) {
	for n, want := range map[int64]string{-1: "?", 0: "0B", 1023: "1023B", 1024: "1.0K", 1536: "1.5K", 5 << 30: "5.0G"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}
