package command

import "testing"

var (
	sinkSpec *Spec
	sinkIdx  []int
)

func BenchmarkLookup(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"GET", "GET k"},
		{"get", "get k"},
		{"XREADGROUP", "XREADGROUP GROUP g c STREAMS s >"},
		{"OBJECT_ENCODING", "OBJECT ENCODING k"},
		{"unknown", "NOSUCHCOMMAND"},
	} {
		args := argv(bc.line)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkSpec = Lookup(args)
			}
		})
	}
}

func BenchmarkKeyIndexes(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"GET", "GET k"},
		{"MSET10", "MSET k0 v k1 v k2 v k3 v k4 v k5 v k6 v k7 v k8 v k9 v"},
		{"EVAL", "EVAL script 2 k1 k2 a1 a2"},
		{"XREAD", "XREAD COUNT 10 STREAMS s1 s2 0 0"},
	} {
		args := argv(bc.line)
		s := Lookup(args)
		dst := make([]int, 0, 16)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkIdx, _ = s.KeyIndexes(args, dst[:0])
			}
		})
	}
}
