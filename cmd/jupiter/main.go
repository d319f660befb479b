// Command jupiter is a Redis sharding proxy: one process per pod that speaks
// RESP to applications and spreads their keys over a fleet of independent
// Redis (or Memorystore) nodes.
//
//	jupiter serve --backends a:6379,b:6379   run the proxy (standalone mode)
//	jupiter serve --spanner-db … --hedge-addr host:port   run a cluster-mode pod
//	jupiter ctl status|nodes|top|add|remove|weight  admin client (RESP, any pod)
//	jupiter ddl [--apply --spanner-db …]     print or apply the Spanner schema
//	jupiter commands                         print the supported-command table (Markdown)
//	jupiter version                          print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("jupiter serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		cfg, err := config.Load(fs, args[1:])
		if err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stderr, "jupiter serve: %v\n", err)
			}
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, cfg, stderr); err != nil {
			fmt.Fprintf(stderr, "jupiter serve: %v\n", err)
			return 1
		}
		return 0
	case "ctl":
		return runCtl(args[1:], stdout, stderr)
	case "ddl":
		return runDDL(args[1:], stdout, stderr)
	case "commands":
		fmt.Fprint(stdout, command.MarkdownTable())
		return 0
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "jupiter", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "jupiter: unknown subcommand %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  jupiter serve [flags]     run the proxy (jupiter serve -h lists the flags;
                            each flag is also JUPITER_<NAME> in the environment;
                            --spanner-db and --hedge-addr select cluster mode)
  jupiter ctl <command>     admin client: status, nodes, top, add, remove, weight
                            (jupiter ctl -h for details)
  jupiter ddl [flags]       print the Spanner schema, or --apply it
  jupiter commands          print the supported-command table (Markdown)
  jupiter version           print the version
`)
}
