package cluster

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

var updateDDL = flag.Bool("update-ddl", false, "rewrite ddl/jupiter.sql from the template")

const ddlFile = "../../ddl/jupiter.sql"

// ddl/jupiter.sql is the rendering of the template with the default names:
// the file operators read and the statements ApplyDDL runs cannot drift.
func TestDDLFileMatchesTemplate(t *testing.T) {
	want := RenderDDL(DefaultTableNames())
	if *updateDDL {
		if err := os.WriteFile(ddlFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(ddlFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s differs from RenderDDL(DefaultTableNames()); run: go test ./internal/cluster -run TestDDLFile -update-ddl", ddlFile)
	}

	// Every ddl/*.sql together holds exactly DDL(DefaultTableNames()).
	files, err := filepath.Glob("../../ddl/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var all []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ParseDDL(string(b))...)
	}
	if !slices.Equal(all, DDL(DefaultTableNames())) {
		t.Fatalf("ddl/*.sql statements differ from DDL(DefaultTableNames()):\n%s", strings.Join(all, ";\n"))
	}
}

func TestDDLNames(t *testing.T) {
	n := TableNames{Lock: "l", Log: "g", Ring: "r", History: "h"}
	stmts := DDL(n)
	if len(stmts) != 7 {
		t.Fatalf("got %d statements, want 7", len(stmts))
	}
	for i, want := range []string{"CREATE TABLE l (", "CREATE TABLE g (", "CREATE TABLE r (", "CREATE TABLE h (",
		"CREATE INDEX h_by_request_id ON h", "CREATE TABLE r_members (", "CREATE TABLE r_progress ("} {
		if !strings.HasPrefix(stmts[i], want) {
			t.Errorf("statement %d = %q, want prefix %q", i, stmts[i], want)
		}
		if strings.Contains(stmts[i], "--") || strings.HasSuffix(stmts[i], ";") {
			t.Errorf("statement %d keeps a comment or semicolon: %q", i, stmts[i])
		}
		if kind, name := createdObject(stmts[i]); name == "" || kind == "" {
			t.Errorf("createdObject(%q) found nothing", stmts[i])
		}
	}
	for _, bad := range []TableNames{
		{Lock: "x;drop", Log: "g", Ring: "r", History: "h"},
		{Lock: "", Log: "g", Ring: "r", History: "h"},
		{Lock: "a", Log: "A", Ring: "r", History: "h"},
		{Lock: "l", Log: "g", Ring: "r", History: "r_members"},
	} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want error", bad)
		}
	}
}

func TestParseDDL(t *testing.T) {
	got := ParseDDL("-- c1\nCREATE TABLE a (x STRING(MAX) DEFAULT ('a;--b')) PRIMARY KEY (x);\n\n  ;\n-- only comment\nCREATE INDEX i ON a (x) -- trailing\n")
	want := []string{"CREATE TABLE a (x STRING(MAX) DEFAULT ('a;--b')) PRIMARY KEY (x)", "CREATE INDEX i ON a (x)"}
	if !slices.Equal(got, want) {
		t.Fatalf("ParseDDL = %q, want %q", got, want)
	}
}
