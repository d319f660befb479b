package admin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
)

// CapacitySource is where a Controller gets the nodes' capacity figures
// (a *capacity.Gatherer): what it last gathered, never a call to a node.
type CapacitySource interface {
	Snapshot() []capacity.Figures
	Fleet() capacity.Fleet
}

// AddCapacity fills each node's Capacity from src and appends the
// fleet_pods and fleet_age_ms STATUS lines (pods the fleet's request
// rates were summed over; the sums' age, -1 before the first). A nil src
// leaves st as it is.
func AddCapacity(st *Status, src CapacitySource) {
	if src == nil {
		return
	}
	by := map[string]capacity.Figures{}
	for _, f := range src.Snapshot() {
		by[f.Addr] = f
	}
	for i := range st.Nodes {
		if f, ok := by[st.Nodes[i].Addr]; ok {
			st.Nodes[i].Capacity = &f
		}
	}
	fl := src.Fleet()
	age := int64(-1)
	if !fl.At.IsZero() {
		age = time.Since(fl.At).Milliseconds()
	}
	st.Extra = append(st.Extra, [2]string{"fleet_pods", strconv.Itoa(fl.Pods)},
		[2]string{"fleet_age_ms", strconv.FormatInt(age, 10)})
}

// capacityField is one key=value field a JUPITER NODES line carries after
// "up=": how to print it from the figures and read it back.
type capacityField struct {
	key    string
	format func(*capacity.Figures) string
	parse  func(*capacity.Figures, string) error
}

func intField(key string, p func(*capacity.Figures) *int64) capacityField {
	return capacityField{key,
		func(f *capacity.Figures) string { return strconv.FormatInt(*p(f), 10) },
		func(f *capacity.Figures, v string) (err error) { *p(f), err = strconv.ParseInt(v, 10, 64); return err }}
}

// floatField prints with prec decimals; unknown (negative) is "-1".
func floatField(key string, prec int, p func(*capacity.Figures) *float64) capacityField {
	return capacityField{key,
		func(f *capacity.Figures) string {
			if *p(f) < 0 {
				return "-1"
			}
			return strconv.FormatFloat(*p(f), 'f', prec, 64)
		},
		func(f *capacity.Figures, v string) (err error) { *p(f), err = strconv.ParseFloat(v, 64); return err }}
}

// wordField prints a string that may not contain spaces ("unknown" when
// empty).
func wordField(key string, p func(*capacity.Figures) *string) capacityField {
	return capacityField{key,
		func(f *capacity.Figures) string {
			if v := strings.Join(strings.Fields(*p(f)), "_"); v != "" {
				return v
			}
			return "unknown"
		},
		func(f *capacity.Figures, v string) error {
			if v == "unknown" {
				v = ""
			}
			*p(f) = v
			return nil
		}}
}

// capacityFields are a NODES line's capacity fields, in order. Redis's own
// INFO names where there is one; ratios are 0..1; ops are requests per
// second (ops_pod: through this pod, ops_fleet: through all pods, ops_node:
// the node's instantaneous_ops_per_sec, every client counted).
var capacityFields = []capacityField{
	floatField("slot_share", 4, func(f *capacity.Figures) *float64 { return &f.SlotShare }),
	intField("used_memory", func(f *capacity.Figures) *int64 { return &f.UsedMemory }),
	intField("maxmemory", func(f *capacity.Figures) *int64 { return &f.MaxMemory }),
	wordField("maxmemory_policy", func(f *capacity.Figures) *string { return &f.MaxMemoryPolicy }),
	floatField("memory_ratio", 4, func(f *capacity.Figures) *float64 { return &f.MemoryRatio }),
	intField("keys", func(f *capacity.Figures) *int64 { return &f.Keys }),
	floatField("key_share", 4, func(f *capacity.Figures) *float64 { return &f.KeyShare }),
	intField("evicted_keys", func(f *capacity.Figures) *int64 { return &f.EvictedKeys }),
	intField("expired_keys", func(f *capacity.Figures) *int64 { return &f.ExpiredKeys }),
	intField("keyspace_hits", func(f *capacity.Figures) *int64 { return &f.KeyspaceHits }),
	intField("keyspace_misses", func(f *capacity.Figures) *int64 { return &f.KeyspaceMisses }),
	floatField("hit_ratio", 4, func(f *capacity.Figures) *float64 { return &f.HitRatio }),
	intField("connected_clients", func(f *capacity.Figures) *int64 { return &f.Clients }),
	floatField("ops_pod", 1, func(f *capacity.Figures) *float64 { return &f.PodOpsPerSec }),
	floatField("ops_fleet", 1, func(f *capacity.Figures) *float64 { return &f.FleetOpsPerSec }),
	floatField("ops_node", 1, func(f *capacity.Figures) *float64 { return &f.OpsPerSec }),
	wordField("role", func(f *capacity.Figures) *string { return &f.Role }),
	intField("info_age_ms", func(f *capacity.Figures) *int64 { return &f.InfoAgeMs }),
}

// ParseNode reads a JUPITER NODES line back (jupiter ctl top). Capacity is
// set when the line carries any capacity field, Health when it carries
// health=; fields it does not know are ignored, so servers may add more.
func ParseNode(line string) (NodeStatus, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return NodeStatus{}, errors.New("empty node line")
	}
	n := NodeStatus{Addr: f[0]}
	var c *capacity.Figures
	var h NodeHealth
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "weight":
			n.Weight, err = strconv.Atoi(v)
		case "slots":
			n.Slots, err = strconv.Atoi(v)
		case "up":
			n.Up = v == "1"
		default:
			var isHealth bool
			if isHealth, err = parseHealthField(&h, k, v); isHealth {
				break
			}
			for _, cf := range capacityFields {
				if cf.key != k {
					continue
				}
				if c == nil {
					c = unknownFigures(n.Addr)
				}
				err = cf.parse(c, v)
			}
		}
		if err != nil {
			return n, fmt.Errorf("node line %q: %s: %v", line, k, err)
		}
	}
	n.Capacity = c
	if h.State != "" {
		n.Health = &h
	}
	return n, nil
}

// unknownFigures are Figures with every number unknown.
func unknownFigures(addr string) *capacity.Figures {
	f := capacity.Figures{Addr: addr, SlotShare: -1, KeyShare: -1, MemoryRatio: -1, HitRatio: -1,
		PodOpsPerSec: -1, FleetOpsPerSec: -1, InfoAgeMs: -1}
	f.Info = capacity.ParseInfo("")
	return &f
}
