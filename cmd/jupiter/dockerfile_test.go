package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileBuildMatchesMake: the image is built with exactly the
// command `make build` runs (and CI runs), so a binary tested here and the
// one shipped are built alike; and the image runs it as documented.
func TestDockerfileBuildMatchesMake(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string {
		s = strings.ReplaceAll(s, "$(GO)", "go")
		s = strings.ReplaceAll(s, "$(VERSION)", "$VERSION")
		return strings.Join(strings.Fields(s), " ")
	}
	dfBuild := regexp.MustCompile(`(CGO_ENABLED=0 go build[^\n]*?)\s+-o /out/jupiter \./cmd/jupiter`).FindStringSubmatch(string(df))
	mkBuild := regexp.MustCompile(`(?m)^BUILD\s+=\s+(.*)$`).FindStringSubmatch(string(mk))
	if dfBuild == nil || mkBuild == nil {
		t.Fatalf("build command not found (Dockerfile %v, Makefile %v)", dfBuild != nil, mkBuild != nil)
	}
	if a, b := norm(dfBuild[1]), norm(mkBuild[1]); a != b {
		t.Fatalf("Dockerfile builds with %q, make build with %q", a, b)
	}
	for _, want := range []string{
		`ENTRYPOINT ["/jupiter"]`,
		"USER nonroot:nonroot",
		"gcr.io/distroless/static",
		"EXPOSE 6379 9090 7070 7071",
	} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
