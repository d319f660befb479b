package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/cluster"
	"github.com/alphauslabs/jupiter/internal/config"
)

const ddlUsage = `usage: jupiter ddl [--print] [--apply --spanner-db projects/P/instances/I/databases/D] [table flags]

Prints the Cloud Spanner schema cluster mode needs (the default; with the
default table names it is ddl/jupiter.sql), or with --apply creates whatever
of it is missing in --spanner-db (tables and indexes are matched by name).
Against the emulator (SPANNER_EMULATOR_HOST set) --apply also creates the
instance and the database; against Cloud Spanner they must exist.
The table flags and --spanner-db are the ones of jupiter serve, also read
from JUPITER_<NAME>.

flags:
`

// runDDL is `jupiter ddl`.
func runDDL(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jupiter ddl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config.Default()
	printDDL := fs.Bool("print", false, "print the DDL (the default without --apply)")
	apply := fs.Bool("apply", false, "create the missing tables and indexes in --spanner-db")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on --apply (schema changes on Cloud Spanner take a while)")
	fs.StringVar(&c.SpannerDB, "spanner-db", "", "projects/P/instances/I/databases/D (honours SPANNER_EMULATOR_HOST)")
	fs.StringVar(&c.LockTable, "lock-table", c.LockTable, "spindle lock table")
	fs.StringVar(&c.LogTable, "log-table", c.LogTable, "hedge log table")
	fs.StringVar(&c.RingTable, "ring-table", c.RingTable, "table holding the current ring")
	fs.StringVar(&c.HistoryTable, "history-table", c.HistoryTable, "table holding every ring version")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ddlUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jupiter ddl: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	// Same environment as serve, for the flags shared with it only.
	shared := map[string]bool{"spanner-db": true, "lock-table": true, "log-table": true, "ring-table": true, "history-table": true}
	if err := config.ApplyEnv(fs, func(k string) string {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "JUPITER_"), "_", "-"))
		if !shared[name] {
			return ""
		}
		return os.Getenv(k)
	}); err != nil {
		fmt.Fprintf(stderr, "jupiter ddl: %v\n", err)
		return 2
	}
	names := cluster.TableNames{Lock: c.LockTable, Log: c.LogTable, Ring: c.RingTable, History: c.HistoryTable}
	if err := names.Validate(); err != nil {
		fmt.Fprintf(stderr, "jupiter ddl: %v\n", err)
		return 2
	}
	if !*apply || *printDDL {
		fmt.Fprint(stdout, cluster.RenderDDL(names))
	}
	if !*apply {
		return 0
	}
	if c.SpannerDB == "" {
		fmt.Fprintln(stderr, "jupiter ddl: --apply needs --spanner-db projects/P/instances/I/databases/D")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := cluster.ApplyDDL(ctx, c.SpannerDB, cluster.DDL(names)); err != nil {
		fmt.Fprintf(stderr, "jupiter ddl: %v\n", err)
		return 1
	}
	where := "Cloud Spanner"
	if h := os.Getenv("SPANNER_EMULATOR_HOST"); h != "" {
		where = "the emulator at " + h
	}
	fmt.Fprintf(stderr, "jupiter ddl: schema is in place in %s (%s)\n", c.SpannerDB, where)
	return 0
}
