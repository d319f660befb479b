package hotkeys

// Sampler picks about one call in n: after each pick it skips a uniformly
// random 0..2n-2 calls (mean n-1), so that no period in a client's commands
// lines up with the sampling. Not safe for concurrent use; the zero value is
// ready (its sequence is then fixed: Seed varies it).
type Sampler struct {
	left uint32 // calls until the next pick; 0: not started
	rng  uint64
}

// Seed sets the random sequence (any value; 0 is replaced).
func (s *Sampler) Seed(x uint64) { s.rng = x*0x9E3779B97F4A7C15 | 1 }

// Pick reports whether this call is sampled, at a rate of one in n (n = 0:
// never, n = 1: always).
func (s *Sampler) Pick(n uint32) bool {
	if n == 0 {
		return false
	}
	if s.left == 0 {
		s.left = s.gap(n)
	}
	s.left--
	if s.left > 0 {
		return false
	}
	s.left = s.gap(n)
	return true
}

// gap is 1..2n-1, uniformly (xorshift64).
func (s *Sampler) gap(n uint32) uint32 {
	if n == 1 {
		return 1
	}
	if s.rng == 0 {
		s.rng = 0x9E3779B97F4A7C15
	}
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 7
	s.rng ^= s.rng << 17
	return 1 + uint32(s.rng%uint64(2*n-1))
}
