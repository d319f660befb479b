package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/redis/go-redis/v9"
)

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// runTop is `ctl top`: JUPITER NODES and STATUS every interval, drawn as
// one table with the nodes nearest to full first, until ctx ends (Ctrl-C,
// or --timeout when given). once: one frame, no screen clearing, exit 1 if
// the pod cannot be asked.
func runTop(ctx context.Context, rdb *redis.Client, addr string, interval time.Duration, once bool,
	stdout, stderr io.Writer) int {
	for {
		frame, err := topFrame(ctx, rdb, addr)
		switch {
		case err != nil && ctx.Err() != nil:
			return 0
		case err != nil && once:
			reportErr(stderr, addr, err)
			return 1
		case err != nil:
			frame = fmt.Sprintf("jupiter top: %s: %v (retrying every %s)\n", addr, err, interval)
		}
		if once {
			fmt.Fprint(stdout, frame)
			return 0
		}
		fmt.Fprint(stdout, clearScreen+frame)
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0
		case <-t.C:
		}
	}
}

// topFrame asks the pod once (bounded) and renders the frame.
func topFrame(ctx context.Context, rdb *redis.Client, addr string) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, watchPollTimeout)
	defer cancel()
	lines, err := rdb.Do(pctx, "JUPITER", "NODES").StringSlice()
	if err != nil {
		return "", err
	}
	text, err := rdb.Do(pctx, "JUPITER", "STATUS").Text()
	if err != nil {
		return "", err
	}
	nodes := make([]admin.NodeStatus, 0, len(lines))
	for _, l := range lines {
		n, err := admin.ParseNode(l)
		if err != nil {
			return "", err
		}
		nodes = append(nodes, n)
	}
	status := map[string]string{}
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			status[k] = v
		}
	}
	return renderTop(addr, status, nodes, time.Now()), nil
}

// sortByFull orders nodes nearest to full first: by used/maxmemory where
// the node has a maxmemory, else by its share of the keys; unknown last,
// ties by address.
func sortByFull(nodes []admin.NodeStatus) {
	full := func(n admin.NodeStatus) float64 {
		if n.Capacity == nil {
			return -1
		}
		return n.Capacity.Full()
	}
	slices.SortStableFunc(nodes, func(a, b admin.NodeStatus) int {
		if c := cmp.Compare(full(b), full(a)); c != 0 {
			return c
		}
		return strings.Compare(a.Addr, b.Addr)
	})
}

// renderTop draws one frame: a header from STATUS, then one row per node.
func renderTop(addr string, status map[string]string, nodes []admin.NodeStatus, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "jupiter top  %s  %s  ring v%s %s  %d nodes", now.Format("15:04:05"), addr,
		status["ring_version"], status["stage"], len(nodes))
	if p := status["fleet_pods"]; p != "" {
		fmt.Fprintf(&b, "  fleet: %s pod(s)", p)
		if ms, err := strconv.ParseInt(status["fleet_age_ms"], 10, 64); err == nil && ms >= 0 {
			fmt.Fprintf(&b, ", %s old", (time.Duration(ms) * time.Millisecond).Round(100*time.Millisecond))
		}
	}
	if down := status["nodes_down"]; down != "" {
		fmt.Fprintf(&b, "  DOWN (%s): %s", status["health_scope"], down)
	}
	b.WriteString("\n\n")
	sortByFull(nodes)
	rows := [][]string{{"NODE", "FULL", "BY", "USED", "MAX", "KEYS", "KEYS%", "SLOTS%", "EVICTED", "EXPIRED",
		"HIT%", "CLIENTS", "OPS/POD", "OPS/FLEET", "OPS/NODE", "ROLE", "UP", "HEALTH", "AGE"}}
	off := false
	for _, n := range nodes {
		c := n.Capacity
		up := "no"
		if n.Up {
			up = "yes"
		}
		if c == nil {
			off = true
			rows = append(rows, []string{n.Addr, "?", "", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", up, healthCell(n.Health), "?"})
			continue
		}
		by := "mem"
		switch {
		case c.Full() < 0:
			by = ""
		case c.MemoryRatio < 0:
			by = "keys"
		}
		role := c.Role
		if role == "" {
			role = "?"
		}
		age := "never"
		if c.InfoAgeMs >= 0 {
			age = (time.Duration(c.InfoAgeMs) * time.Millisecond).Round(100 * time.Millisecond).String()
		}
		rows = append(rows, []string{n.Addr, pct(c.Full()), by, bytesIEC(c.UsedMemory), maxMem(c.MaxMemory),
			count(c.Keys), pct(c.KeyShare), pct(c.SlotShare), count(c.EvictedKeys), count(c.ExpiredKeys),
			pct(c.HitRatio), count(c.Clients), rate(c.PodOpsPerSec), rate(c.FleetOpsPerSec), rate(c.OpsPerSec),
			role, up, healthCell(n.Health), age})
	}
	writeTable(&b, rows, map[int]bool{0: true, 2: true, 15: true, 16: true, 17: true})
	if off {
		b.WriteString("\n? = no capacity figures: the pod runs with --capacity-interval 0\n")
	}
	return b.String()
}

// healthCell renders a node's health: "up" or "down", with the down
// reports of the round that made the verdict ("down(2/3)"), and the pod's
// own view when it differs ("up(1/3),here:down"); "?" when unknown.
func healthCell(h *admin.NodeHealth) string {
	if h == nil {
		return "?"
	}
	s := fmt.Sprintf("%s(%d/%d)", h.State, h.DownReports, h.Reporters)
	if h.Local != h.State && h.Local != "unknown" && h.Local != "" {
		s += ",here:" + h.Local
	}
	return s
}

// writeTable writes rows as aligned columns: left-aligned where left says
// so, right-aligned otherwise.
func writeTable(w *strings.Builder, rows [][]string, left map[int]bool) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if left[i] {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		w.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// pct renders a 0..1 ratio as a percentage ("?" when unknown).
func pct(r float64) string {
	if r < 0 {
		return "?"
	}
	return strconv.FormatFloat(r*100, 'f', 1, 64) + "%"
}

// rate renders requests per second ("?" when unknown).
func rate(v float64) string {
	if v < 0 {
		return "?"
	}
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// maxMem renders maxmemory: "none" for 0 (no limit).
func maxMem(n int64) string {
	if n == 0 {
		return "none"
	}
	return bytesIEC(n)
}

// bytesIEC renders a byte count with a binary unit, e.g. "1.5M" ("?" when
// unknown).
func bytesIEC(n int64) string {
	if n < 0 {
		return "?"
	}
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + string(units[i])
}
