package cluster

import (
	"context"
	"strings"
	"sync/atomic"

	"cloud.google.com/go/spanner/apiv1/spannerpb"
	"google.golang.org/grpc"
)

// SpannerRPCs counts the Spanner calls one Member's client made, whoever
// made them: jupiter's Store and Syncer, spindle's lock rounds and hedge's
// leader lookups all share the client. docs/scale.md turns these counts
// into Spanner capacity (reads/s and writes/s per pod).
type SpannerRPCs struct {
	// Reads are queries and reads (ExecuteStreamingSql, StreamingRead, and
	// a unary ExecuteSql/Read whose statement is a SELECT).
	Reads int64
	// DML are statements that change rows inside a read-write transaction
	// (spindle's lock updates); they count against writes only through
	// their transaction's Commit.
	DML int64
	// Commits are committed writes: one per read-write transaction and per
	// blind Apply (the member heartbeat). Spanner's write throughput limits
	// are about these.
	Commits int64
	// Other is everything else (BeginTransaction, Rollback, sessions).
	Other int64
}

// Sub returns r - o (the calls made between two snapshots).
func (r SpannerRPCs) Sub(o SpannerRPCs) SpannerRPCs {
	return SpannerRPCs{Reads: r.Reads - o.Reads, DML: r.DML - o.DML, Commits: r.Commits - o.Commits, Other: r.Other - o.Other}
}

// Add returns r + o.
func (r SpannerRPCs) Add(o SpannerRPCs) SpannerRPCs {
	return SpannerRPCs{Reads: r.Reads + o.Reads, DML: r.DML + o.DML, Commits: r.Commits + o.Commits, Other: r.Other + o.Other}
}

// rpcKind is what a Spanner RPC counts as.
type rpcKind int

const (
	rpcOther rpcKind = iota
	rpcRead
	rpcDML
	rpcCommit
)

// classifyRPC maps a gRPC method of google.spanner.v1.Spanner (and, for a
// unary ExecuteSql, its request) to the kind it counts as. Pure.
func classifyRPC(method string, req any) rpcKind {
	name := method[strings.LastIndexByte(method, '/')+1:]
	switch name {
	case "ExecuteStreamingSql", "StreamingRead", "Read":
		return rpcRead
	case "Commit", "BatchWrite":
		return rpcCommit
	case "ExecuteBatchDml":
		return rpcDML
	case "ExecuteSql":
		if r, ok := req.(*spannerpb.ExecuteSqlRequest); ok && isQuery(r.GetSql()) {
			return rpcRead
		}
		return rpcDML
	}
	return rpcOther
}

// isQuery reports whether sql is a query (SELECT or WITH) rather than DML.
func isQuery(sql string) bool {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return false
	}
	w := strings.ToLower(f[0])
	return w == "select" || w == "with" || strings.HasPrefix(w, "(")
}

// rpcCounter is a gRPC client interceptor pair that counts Spanner RPCs.
type rpcCounter struct {
	n [4]atomic.Int64 // by rpcKind
}

func (c *rpcCounter) count(method string, req any) { c.n[classifyRPC(method, req)].Add(1) }

func (c *rpcCounter) snapshot() SpannerRPCs {
	if c == nil {
		return SpannerRPCs{}
	}
	return SpannerRPCs{Reads: c.n[rpcRead].Load(), DML: c.n[rpcDML].Load(), Commits: c.n[rpcCommit].Load(), Other: c.n[rpcOther].Load()}
}

func (c *rpcCounter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.count(method, req)
	return invoker(ctx, method, req, reply, cc, opts...)
}

// stream counts a streaming call once, when it opens (the streaming
// methods Spanner's client uses are all reads).
func (c *rpcCounter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c.count(method, nil)
	return streamer(ctx, desc, cc, method, opts...)
}
