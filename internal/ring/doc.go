// Package ring maps Redis keys to backend nodes. A Ring is an immutable,
// versioned snapshot of the node set; every routing decision is a pure
// function of (key, ring), so two proxies holding rings with the same nodes
// route every key identically without talking to each other.
//
// # Keys to slots
//
// A key is first reduced to one of Slots (16384) hash slots exactly the way
// Redis Cluster does it: CRC16-XMODEM of the key modulo 16384, where a key
// containing a non-empty "{tag}" is hashed on the tag alone (see HashTag).
// Reusing the Redis Cluster function means clients' hash-tag habits
// ("{user1000}.following" and "{user1000}.followers" land together, so
// multi-key commands on them can go to one node) carry over unchanged, and
// our slot numbers agree with CLUSTER KEYSLOT, which makes debugging easy.
//
// Why slots at all, rather than hashing every key straight to a node: the
// slot table is computed once per ring (New), so the hot path (Owner) is a
// CRC16 plus one array load, with no allocation and no per-node work however
// many nodes there are. 16384 is Redis Cluster's number and is large enough
// that a per-slot hash balances well (expected deviation of a node's share is
// about sqrt(p(1-p)/16384), well under one percentage point), yet small
// enough that the table is 32 KiB and a ring change can be described as a
// short list of slot moves (Diff).
//
// # Slots to nodes: weighted rendezvous hashing
//
// Each slot is owned by the node with the highest score
//
//	score(node, slot) = -weight / ln(u),  u = unit(h(node.Name, slot))
//
// (weighted rendezvous, or "highest random weight", hashing). The properties
// we want, and why this gives them:
//
//   - Minimal movement. A node's score depends only on that node and the
//     slot, never on the other nodes. Adding a node can therefore only take
//     slots for itself (it wins where it now has the highest score); removing
//     a node only re-homes that node's slots; changing one node's weight only
//     moves slots to or from that node. No slot ever moves between two
//     bystander nodes, which a modulo scheme or a naive slot-range split
//     cannot promise.
//   - Weights. -1/ln(u) for uniform u is the reciprocal of an Exp(1) variate,
//     so with weight w the node wins a slot with probability w/sum(w), exactly
//     proportional, with no virtual-node tables to tune.
//   - No coordination and no stored assignment: the table is recomputed from
//     the node list alone.
//
// Ties (equal scores, practically never) go to the node whose name sorts
// first.
//
// # The hash, precisely (every proxy must agree on it)
//
// Changing any of this moves keys between nodes, so it is pinned by golden
// tests and must stay deterministic across processes and architectures:
//
//	h(name, slot) = splitmix64fin(FNV-1a-64(name || byte(slot>>8) || byte(slot)))
//	unit(h)       = (2*(h>>12) + 1) / 2^53      // odd multiple of 2^-53, in (0,1)
//	splitmix64fin(z): z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
//	                  z = (z ^ z>>27) * 0x94d049bb133111eb
//	                  return z ^ z>>31
//
// FNV-1a alone mixes its last bytes poorly; the splitmix64 finalizer
// (Stafford's "mix13") gives full avalanche, which is what makes the balance
// and independence between nodes good. The natural log is computed by a copy
// of the FreeBSD/fdlibm algorithm (the one behind Go's pure-Go math.Log) in
// which every product is explicitly rounded to float64. math.Log itself
// cannot be used: it is assembly on amd64 and Go code elsewhere, and the Go
// compiler may fuse x*y+z into one FMA instruction (arm64, ppc64, s390x,
// riscv64, and amd64 built with GOAMD64=v3), which changes the last bit of
// about one result in 700 (measured). With only exactly-rounded IEEE-754
// binary64 operations left, scores, and so owners, are bit-identical on
// every platform Go supports (TestDetLogGolden, TestGoldenOwners).
//
// # Names, not addresses
//
// The hash uses Node.Name, not Node.Addr. Today the name defaults to the
// address "host:port", but keeping them apart means a backend can be moved
// to a new address (new host, new port, a DNS name instead of an IP) by
// changing only its Addr, and no key moves. Renaming a node, on the other
// hand, is a remove plus an add.
//
// # Concurrency
//
// A *Ring is never modified after New returns, so it may be shared freely
// between goroutines. Add, Remove, SetWeight and With return new rings.
// Holder publishes the current ring to the hot path with an atomic pointer
// and refuses to go back to an older version.
package ring
