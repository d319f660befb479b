package capacity

import (
	"strconv"
	"strings"
)

// Info is what one INFO reply says about a node's capacity. A field the
// reply lacks is -1 (unknown; Role and MaxMemoryPolicy ""), so that a
// node which hides a figure is never shown as empty.
type Info struct {
	UsedMemory      int64   `json:"used_memory"`      // used_memory, bytes
	MaxMemory       int64   `json:"maxmemory"`        // maxmemory, bytes; 0 = no limit
	MaxMemoryPolicy string  `json:"maxmemory_policy"` // e.g. allkeys-lru, noeviction
	Keys            int64   `json:"keys"`             // db0 keys (what DBSIZE counts)
	Expires         int64   `json:"expires"`          // db0 keys with a TTL
	EvictedKeys     int64   `json:"evicted_keys"`     // since the node started
	ExpiredKeys     int64   `json:"expired_keys"`     // since the node started
	KeyspaceHits    int64   `json:"keyspace_hits"`    // since the node started
	KeyspaceMisses  int64   `json:"keyspace_misses"`  // since the node started
	Clients         int64   `json:"connected_clients"`
	OpsPerSec       float64 `json:"instantaneous_ops_per_sec"` // the node's own estimate, all clients
	Role            string  `json:"role"`                      // master or slave
}

// unknownInfo is an Info that knows nothing.
func unknownInfo() Info {
	return Info{UsedMemory: -1, MaxMemory: -1, Keys: -1, Expires: -1, EvictedKeys: -1, ExpiredKeys: -1,
		KeyspaceHits: -1, KeyspaceMisses: -1, Clients: -1, OpsPerSec: -1}
}

// ParseInfo reads the figures Info holds from an INFO reply ("key:value"
// lines under "# Section" headers, CRLF or LF). Keys come from the
// keyspace section's db0 line; a keyspace section without one means an
// empty database (Redis lists only non-empty ones), no keyspace section
// at all leaves Keys unknown. Lines it does not know are ignored, so any
// Redis version (and Memorystore, whose INFO has the same fields) parses.
func ParseInfo(text string) Info {
	in := unknownInfo()
	num := func(v string, p *int64) {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			*p = n
		}
	}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "#") {
			if strings.EqualFold(strings.TrimSpace(line[1:]), "keyspace") && in.Keys < 0 {
				in.Keys, in.Expires = 0, 0
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "used_memory":
			num(v, &in.UsedMemory)
		case "maxmemory":
			num(v, &in.MaxMemory)
		case "maxmemory_policy":
			in.MaxMemoryPolicy = v
		case "evicted_keys":
			num(v, &in.EvictedKeys)
		case "expired_keys":
			num(v, &in.ExpiredKeys)
		case "keyspace_hits":
			num(v, &in.KeyspaceHits)
		case "keyspace_misses":
			num(v, &in.KeyspaceMisses)
		case "connected_clients":
			num(v, &in.Clients)
		case "instantaneous_ops_per_sec":
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				in.OpsPerSec = f
			}
		case "role":
			in.Role = v
		case "db0":
			// db0:keys=N,expires=M,avg_ttl=T[,subexpiry=S]
			for kv := range strings.SplitSeq(v, ",") {
				f, n, _ := strings.Cut(kv, "=")
				switch f {
				case "keys":
					num(n, &in.Keys)
				case "expires":
					num(n, &in.Expires)
				}
			}
		}
	}
	return in
}

// HitRatio is hits / (hits + misses) since the node started, -1 when
// unknown or when there was no lookup yet.
func (in Info) HitRatio() float64 {
	h, m := float64(in.KeyspaceHits), float64(in.KeyspaceMisses)
	if h < 0 || m < 0 || h+m == 0 {
		return -1
	}
	return h / (h + m)
}

// MemoryRatio is used_memory / maxmemory, -1 when either is unknown or the
// node has no limit (maxmemory 0).
func (in Info) MemoryRatio() float64 {
	if in.UsedMemory < 0 || in.MaxMemory <= 0 {
		return -1
	}
	return float64(in.UsedMemory) / float64(in.MaxMemory)
}
