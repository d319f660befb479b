package cluster

import (
	"fmt"
	"time"
)

// Freeze barrier timeouts. Writes to moving keys are held while a pod is in
// freeze, so the freeze barrier cannot wait out a dead pod's lease; at its
// timeout the leader writes the prepare record again (unfrozen: nothing was
// written to a new owner yet), waits there (prepare's timeout exceeds the
// lease) and freezes again. Whether that is worth it depends on who held
// the barrier: different pods each time is churn (pods dying during the
// rebalance; each lease runs out in turn), and aborting would only make
// the operator start over in the same churn; the same pod every time is a
// pod that is alive but does not apply the stage, and waiting longer
// changes nothing.

// MaxFreezeRetreats is how many freeze barrier timeouts in a row one pod may
// hold up: at the next one the rebalance is aborted. MaxRetreating bounds
// the retreats of one rebalance in time, whoever held them up: a freeze
// barrier timing out that long after the first one aborts it.
const (
	MaxFreezeRetreats = 3
	MaxRetreating     = 3 * time.Minute
)

// retreats is the freeze timeouts of one rebalance (epoch), as this leader
// process saw them: a new leader starts over.
type retreats struct {
	epoch uint64
	first time.Time      // the first freeze timeout of epoch
	n     int            // retreats so far
	held  map[string]int // pod → freeze timeouts in a row it held up
}

// next decides, at a freeze barrier timeout of epoch while waiting for the
// pods waiting, whether the rebalance goes back to prepare once more (ok)
// or is aborted (why). It returns the state to keep either way. Pure.
func (rs retreats) next(epoch uint64, waiting []string, now time.Time) (_ retreats, ok bool, why string) {
	if rs.epoch != epoch || rs.held == nil {
		rs = retreats{epoch: epoch, first: now}
	}
	held := make(map[string]int, len(waiting))
	for _, pod := range waiting {
		held[pod] = rs.held[pod] + 1
	}
	rs.held = held
	for _, pod := range waiting {
		if held[pod] > MaxFreezeRetreats {
			return rs, false, fmt.Sprintf("pod %s held up %d freeze barriers in a row", pod, held[pod])
		}
	}
	if d := now.Sub(rs.first); d > MaxRetreating {
		return rs, false, fmt.Sprintf("freeze barriers still time out %v after the first (%d retreats)", d.Round(time.Second), rs.n)
	}
	rs.n++
	return rs, true, ""
}

// retreat reports whether the rebalance of epoch goes back from freeze to
// prepare once more (retreats.next over the pods the last barrier check
// waited for), and if not why.
func (r *Rebalancer) retreat(epoch uint64) (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ok bool
	var why string
	r.retreats, ok, why = r.retreats.next(epoch, r.waitingPods, time.Now())
	return ok, why
}
