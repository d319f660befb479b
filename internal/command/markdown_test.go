package command

import (
	"strings"
	"testing"
)

func TestMarkdownTableStable(t *testing.T) {
	a := MarkdownTable()
	for i := 0; i < 5; i++ {
		if b := MarkdownTable(); b != a {
			t.Fatal("MarkdownTable is not deterministic")
		}
	}
	lines := strings.Split(strings.TrimSuffix(a, "\n"), "\n")
	if lines[0] != "| Command | Keys | Class | Handling |" || lines[1] != "|---|---|---|---|" {
		t.Fatalf("unexpected header:\n%s\n%s", lines[0], lines[1])
	}
	for _, want := range []string{
		"| MGET | 1..N | read | split per node, merged in key order |",
		"| DEL | 1..N | delete | split per node, integers summed |",
		"| MONITOR | - | blocked | refused: not supported through a sharding proxy",
		"| GET | 1 | read | single node |",
		"| EVAL | numkeys | rmw | single node (all keys on one node) |",
		"| ZUNIONSTORE | 1 + numkeys |",
		"| XREAD | STREAMS 1..N | read | single node (all keys on one node); with BLOCK on a dedicated connection while blocked |",
		"| SET | 1 | rmw; write without NX/XX/GET/KEEPTTL | single node |",
		"| SCRIPT LOAD | - | keyless | all nodes, first node's reply if all succeeded |",
		"| CLUSTER (all subcommands) | - | blocked | refused:",
		"| CONFIG GET | - | keyless | answered by proxy |",
		"| OBJECT ENCODING, FREQ, IDLETIME, REFCOUNT | 1 | read | single node |",
		"| JUPITER | - | keyless | answered by proxy |",
	} {
		if !strings.Contains(a, "\n"+want) {
			t.Errorf("table lacks a row starting %q", want)
		}
	}
	rows := map[string]bool{}
	for _, l := range lines[2:] {
		if strings.Count(l, " | ") != 3 || !strings.HasPrefix(l, "| ") || !strings.HasSuffix(l, " |") {
			t.Errorf("malformed row %q", l)
		}
		cmd := strings.SplitN(l, " | ", 2)[0]
		if rows[cmd] {
			t.Errorf("duplicate row %q", cmd)
		}
		rows[cmd] = true
	}
	// Every top-level command has a row of its own or via its subcommands.
	for _, s := range All() {
		if s.Parent != nil {
			continue
		}
		if !strings.Contains(a, "\n| "+s.DisplayName()+" ") {
			t.Errorf("no row for %s", s.DisplayName())
		}
	}
}
