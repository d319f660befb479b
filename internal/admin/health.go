package admin

import (
	"fmt"
	"strconv"
	"strings"
)

// NodeHealth is one node's health as a pod shows it: the fleet's verdict
// (who reported what) and the pod's own view. See package health.
type NodeHealth struct {
	// State is "up" or "down": the fleet's verdict in cluster mode (the
	// leader's, from a quorum of pods' reports), this pod's own view in
	// standalone mode. Scope says which: "fleet" or "pod".
	State string `json:"state"`
	Scope string `json:"scope"`
	// DownReports of Reporters pods reported the node unreachable in the
	// round that made the verdict; DownBy names them. Quorum is how many
	// agreeing reports a change of verdict needs.
	DownReports int      `json:"down_reports"`
	Reporters   int      `json:"reporters"`
	Quorum      int      `json:"quorum"`
	DownBy      []string `json:"down_by"`
	// SinceMs is how long ago the verdict last changed (-1: never).
	SinceMs int64 `json:"since_ms"`
	// Error is one down reporter's probe error.
	Error string `json:"error,omitempty"`
	// Local is this pod's own probe of the node: "up", "down" or
	// "unknown" (not probed yet); LocalError says why it is down.
	Local      string `json:"local"`
	LocalError string `json:"local_error,omitempty"`
}

// HealthSource is where a Controller gets its nodes' health.
type HealthSource interface {
	// NodeHealth returns the health of each node address it knows.
	NodeHealth() map[string]NodeHealth
	// HealthLines are STATUS lines about the verdict (health_pods,
	// health_age_ms, fleet_down).
	HealthLines() [][2]string
}

// AddHealth fills each node's Health from src and appends src's STATUS
// lines. A nil src leaves st as it is.
func AddHealth(st *Status, src HealthSource) {
	if src == nil {
		return
	}
	by := src.NodeHealth()
	for i := range st.Nodes {
		if h, ok := by[st.Nodes[i].Addr]; ok {
			st.Nodes[i].Health = &h
		}
	}
	st.Extra = append(st.Extra, src.HealthLines()...)
}

// healthFields renders a NODES line's health fields:
// "health=up|down fleet_down_reports=D/R down_by=pod,pod|- local=up|down|unknown".
func healthFields(h *NodeHealth) string {
	by := "-"
	if len(h.DownBy) > 0 {
		by = strings.Join(h.DownBy, ",")
	}
	return fmt.Sprintf(" health=%s fleet_down_reports=%d/%d down_by=%s local=%s",
		h.State, h.DownReports, h.Reporters, by, h.Local)
}

// parseHealthField reads one of healthFields' fields into h (ok false:
// not a health field).
func parseHealthField(h *NodeHealth, k, v string) (ok bool, err error) {
	switch k {
	case "health":
		h.State = v
	case "fleet_down_reports":
		d, r, found := strings.Cut(v, "/")
		if !found {
			return true, fmt.Errorf("want down/reporters, got %q", v)
		}
		if h.DownReports, err = strconv.Atoi(d); err == nil {
			h.Reporters, err = strconv.Atoi(r)
		}
	case "down_by":
		h.DownBy = nil
		if v != "-" {
			h.DownBy = strings.Split(v, ",")
		}
	case "local":
		h.Local = v
	default:
		return false, nil
	}
	return true, err
}
