package cluster

import (
	"testing"

	"cloud.google.com/go/spanner/apiv1/spannerpb"
)

func TestClassifyRPC(t *testing.T) {
	const p = "/google.spanner.v1.Spanner/"
	sql := func(s string) *spannerpb.ExecuteSqlRequest { return &spannerpb.ExecuteSqlRequest{Sql: s} }
	for _, c := range []struct {
		method string
		req    any
		want   rpcKind
	}{
		{p + "ExecuteStreamingSql", nil, rpcRead},
		{p + "StreamingRead", nil, rpcRead},
		{p + "Read", nil, rpcRead},
		{p + "Commit", nil, rpcCommit},
		{p + "BatchWrite", nil, rpcCommit},
		{p + "ExecuteSql", sql("update jupiter_lock set heartbeat = PENDING_COMMIT_TIMESTAMP()"), rpcDML},
		{p + "ExecuteSql", sql("insert jupiter_lock (name) values ('x')"), rpcDML},
		{p + "ExecuteSql", sql("  SELECT token FROM t"), rpcRead},
		{p + "ExecuteSql", sql("with a as (select 1) select * from a"), rpcRead},
		{p + "ExecuteSql", nil, rpcDML},
		{p + "ExecuteBatchDml", nil, rpcDML},
		{p + "BeginTransaction", nil, rpcOther},
		{p + "Rollback", nil, rpcOther},
		{p + "CreateSession", nil, rpcOther},
		{"Commit", nil, rpcCommit},
	} {
		if got := classifyRPC(c.method, c.req); got != c.want {
			t.Errorf("classifyRPC(%s, %v) = %v, want %v", c.method, c.req, got, c.want)
		}
	}
}

func TestSpannerRPCsArithmetic(t *testing.T) {
	a := SpannerRPCs{Reads: 5, DML: 4, Commits: 3, Other: 2}
	b := SpannerRPCs{Reads: 1, DML: 1, Commits: 1, Other: 1}
	if got := a.Sub(b).Add(b); got != a {
		t.Fatalf("Sub then Add = %+v, want %+v", got, a)
	}
	var nilCounter *rpcCounter
	if got := nilCounter.snapshot(); got != (SpannerRPCs{}) {
		t.Fatalf("nil counter snapshot = %+v", got)
	}
}
