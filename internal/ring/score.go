package ring

import "math"

// The functions in this file define which node owns which slot. They are
// part of the routing contract between proxies (see the package doc): any
// change moves keys, and TestGoldenOwners will fail.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// nameSeed is the FNV-1a-64 state after hashing name. New computes it once
// per node so that the per-slot work is just the two slot bytes and the
// finalizer; slotHash(nameSeed(n), s) equals the FNV-1a hash of n||slot.
func nameSeed(name string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= fnvPrime64
	}
	return h
}

// slotHash continues the FNV-1a state seed with the slot, big-endian, and
// applies the splitmix64 finalizer for avalanche.
func slotHash(seed uint64, slot uint16) uint64 {
	h := seed
	h ^= uint64(slot >> 8)
	h *= fnvPrime64
	h ^= uint64(slot & 0xff)
	h *= fnvPrime64
	return mix64(h)
}

// mix64 is the splitmix64 finalizer (Stafford's mix13), a bijection on
// uint64 with full avalanche.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// unit maps a 64-bit hash to a float64 strictly inside (0, 1): an odd
// multiple of 2^-53 built from the top 52 bits. It is exact (2m+1 < 2^53),
// never 0 (ln would be -Inf) and never 1 (ln would be 0, score +Inf).
func unit(h uint64) float64 {
	return float64(h>>12<<1|1) * 0x1p-53
}

// score is the weighted rendezvous score -w/ln(u) of a node with weight w
// for a slot whose hash for that node is h. Higher wins. For u uniform on
// (0,1), -ln(u) is Exp(1), so P(node wins) = w / sum of weights.
func score(w float64, h uint64) float64 {
	return w / -detLog(unit(h))
}

// detLog is the natural logarithm for positive normal x (unit's results
// are), bit-for-bit the same on every architecture.
//
// It is the FreeBSD /usr/src/lib/msun/src/e_log.c algorithm, the same one
// as Go's pure-Go math.log, with every product wrapped in an explicit
// float64 conversion: the Go spec lets the compiler fuse x*y+z into one FMA
// (it does on arm64, ppc64, s390x, riscv64 and with GOAMD64=v3), which
// changes the last bit, and an explicit conversion forbids that. math.Log itself is assembly on amd64,
// so it cannot be used if owners are to agree across architectures.
// Accuracy is < 1 ulp, as for math.Log (TestDetLog).
func detLog(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01 /* 3fe62e42 fee00000 */
		ln2Lo = 1.90821492927058770002e-10 /* 3dea39ef 35793c76 */
		l1    = 6.666666666666735130e-01   /* 3FE55555 55555593 */
		l2    = 3.999999999940941908e-01   /* 3FD99999 9997FA04 */
		l3    = 2.857142874366239149e-01   /* 3FD24924 94229359 */
		l4    = 2.222219843214978396e-01   /* 3FCC71C5 1D8E78AF */
		l5    = 1.818357216161805012e-01   /* 3FC74664 96CB03DE */
		l6    = 1.531383769920937332e-01   /* 3FC39A09 D078C69F */
		l7    = 1.479819860511658591e-01   /* 3FC2F112 DF3E5244 */
	)

	// Reduce x = f1 * 2^k with f1 in [sqrt(2)/2, sqrt(2)): math.Frexp for
	// normal x, written out so it inlines (exact bit manipulation).
	b := math.Float64bits(x)
	ki := int(b>>52&0x7ff) - 1022
	f1 := math.Float64frombits(b&^(0x7ff<<52) | 1022<<52)
	if f1 < math.Sqrt2/2 {
		f1 *= 2 // exact
		ki--
	}
	f := f1 - 1
	k := float64(ki)

	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (l1 + float64(s4*(l3+float64(s4*(l5+float64(s4*l7)))))))
	t2 := float64(s4 * (l2 + float64(s4*(l4+float64(s4*l6)))))
	r := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*ln2Lo))) - f)
}
