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

	"github.com/redis/go-redis/v9"
)

const ctlUsage = `usage: jupiter ctl [--addr host:port] [--user admin --password P] [--timeout D] <command>

Talks to any jupiter pod over its RESP port (JUPITER … commands). In cluster
mode the pod forwards changes to the leader; they succeed once it accepted.
With --admin-password set on the pods, changes need --user admin and that
password (or JUPITER_CTL_PASSWORD in the environment, kept out of ps).

commands:
  status                  this pod's view: self, leader, ring_version, stage, nodes…
  nodes                   one line per ring node: addr weight slots up
  add <host:port> [w]     add a Redis node (weight w, default 1)
  remove <host:port>      remove a Redis node
  weight <host:port> <w>  change a node's weight

Exit status: 0 on success, 1 when the pod refused the request (its -ERR
message is printed) or could not be reached, 2 on a usage error.

flags:
`

// runCtl is `jupiter ctl`: a RESP admin client.
func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jupiter ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:6379", "RESP address (host:port) of any jupiter pod")
	user := fs.String("user", "", `AUTH user: "admin" for ring changes when the pods have --admin-password`)
	password := fs.String("password", "", "AUTH password (default $JUPITER_CTL_PASSWORD)")
	timeout := fs.Duration("timeout", 15*time.Second, "bound on the whole request (a change waits for the leader)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the command and its arguments.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	sub := strings.ToLower(pos[0])
	rest := pos[1:]
	argc := map[string][2]int{"status": {0, 0}, "nodes": {0, 0}, "add": {1, 2}, "remove": {1, 1}, "weight": {2, 2}}
	if sub == "help" {
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	n, ok := argc[sub]
	if !ok {
		fmt.Fprintf(stderr, "jupiter ctl: unknown command %q\n", pos[0])
		fs.Usage()
		return 2
	}
	if len(rest) < n[0] || len(rest) > n[1] {
		fmt.Fprintf(stderr, "jupiter ctl: wrong number of arguments for %s\n", sub)
		fs.Usage()
		return 2
	}

	redis.SetLogger(quietLogger{}) // errors are reported below, once
	if *password == "" {
		*password = os.Getenv("JUPITER_CTL_PASSWORD")
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:            *addr,
		Username:        *user,
		Password:        *password,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1, // a change must not be sent twice behind the operator's back
		PoolSize:        1,
		DialTimeout:     5 * time.Second,
		DialerRetries:   1,
		ReadTimeout:     *timeout,
		WriteTimeout:    5 * time.Second,
	})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	cmd := []any{"JUPITER", strings.ToUpper(sub)}
	for _, a := range rest {
		cmd = append(cmd, a)
	}
	res := rdb.Do(ctx, cmd...)
	if err := res.Err(); err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			fmt.Fprintf(stderr, "jupiter ctl: %s\n", err)
		} else {
			fmt.Fprintf(stderr, "jupiter ctl: %s: %v\n", *addr, err)
		}
		return 1
	}
	switch v := res.Val().(type) {
	case string:
		fmt.Fprintln(stdout, strings.TrimRight(strings.ReplaceAll(v, "\r\n", "\n"), "\n"))
	case []any:
		for _, e := range v {
			fmt.Fprintln(stdout, e)
		}
	default:
		fmt.Fprintln(stdout, v)
	}
	return 0
}

// quietLogger silences go-redis's own log lines (dial retries).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
