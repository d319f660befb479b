package test

import (
	"strings"
	"testing"
	"time"
)

// TestClusterAddOnFreshDatabase: on an empty database, 2 pods started with
// --backends a,b and a JUPITER ADD c sent as soon as the first pod answers
// (retried while there is no leader yet, as a client would): the ring ends
// as a, b and c, never c alone (the change waits for the leader's seed
// instead of creating the first ring).
func TestClusterAddOnFreshDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster end-to-end test; skipped with -short")
	}
	e := startClEnv(t, 3)
	seeds := e.addrs(0, 1)
	p0 := e.startPod(seeds)
	e.startPod(seeds)
	added := e.redis[2].Addr
	var last string
	clWait(t, e, 90*time.Second, "JUPITER ADD accepted", func() string {
		if last = p0.jupiterCmd("ADD", added); last == "OK" {
			return ""
		}
		return last
	})
	want := clSortedNodes(append(seeds, added)...)
	clWait(t, e, 90*time.Second, "every pod stable on the seeds plus the added node", func() string {
		for i, p := range e.pods {
			st := p.status()
			if st == nil || st["stage"] != "stable" || clSortedNodes(strings.Split(st["nodes"], ",")...) != want {
				return "pod " + string(rune('0'+i)) + ": stage " + st["stage"] + " nodes " + st["nodes"]
			}
		}
		return ""
	})
}
