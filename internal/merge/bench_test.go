package merge

import "testing"

func BenchmarkMGet10(b *testing.B) {
	parts, pos := mget10()
	dst := make([]byte, 0, 1024)
	scratch := make([][]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		dst, scratch = MGet(dst[:0], parts, pos, scratch)
	}
}

func BenchmarkSum(b *testing.B) {
	parts := ps(":1\r\n", ":20\r\n", ":300\r\n")
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = Sum(dst[:0], parts)
	}
}
