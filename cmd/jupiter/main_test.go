package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite generated files (README command table)")

func TestRunUsageAndErrors(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStderr string
		inStdout string
	}{
		{nil, 2, "usage:", ""},
		{[]string{"nope"}, 2, `unknown subcommand "nope"`, ""},
		{[]string{"version"}, 0, "", "jupiter "},
		{[]string{"commands"}, 0, "", "| MGET |"},
		{[]string{"serve"}, 2, "--backends: at least one", ""},
		{[]string{"serve", "--backends", "nohost"}, 2, "--backends", ""},
		{[]string{"serve", "--backends", "a:1", "--backend-conns", "0"}, 2, "--backend-conns", ""},
		{[]string{"serve", "--backends", "a:1", "extra"}, 2, "unexpected arguments", ""},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != tt.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", tt.args, code, tt.code, errb.String())
		}
		if !strings.Contains(errb.String(), tt.inStderr) {
			t.Errorf("run(%q) stderr %q lacks %q", tt.args, errb.String(), tt.inStderr)
		}
		if !strings.Contains(out.String(), tt.inStdout) {
			t.Errorf("run(%q) stdout lacks %q", tt.args, tt.inStdout)
		}
	}
}
