// Command gen writes internal/command/zz_table_gen.go from a live
// redis-server's COMMAND reply.
//
// The generated file holds Redis facts only — name, arity, flags, key
// specifications, tips and subcommands of every command — so that jupiter's
// table can be regenerated mechanically when the supported Redis version
// changes. Jupiter's own decisions (class, policy, refusals) are hand-written
// in policy.go and layered on top at init time.
//
// Usage (from the module root, against a throwaway server):
//
//	redis-server --port 7399 --save '' --daemonize yes
//	go run ./internal/command/gen -addr 127.0.0.1:7399 -out internal/command/zz_table_gen.go
//	redis-cli -p 7399 shutdown nosave
//
// The generator fails on a command flag or key-spec flag it does not know, so
// a newer Redis cannot silently add semantics jupiter has not looked at.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// commandFlags maps Redis's COMMAND INFO flag names to the Go constants in
// package command, in the order they are written.
var commandFlags = []struct{ name, ident string }{
	{"write", "FlagWrite"},
	{"readonly", "FlagReadonly"},
	{"blocking", "FlagBlocking"},
	{"pubsub", "FlagPubSub"},
	{"noscript", "FlagNoScript"},
	{"admin", "FlagAdmin"},
	{"movablekeys", "FlagMovable"},
	{"denyoom", "FlagDenyOOM"},
	{"module", "FlagModule"},
	{"loading", "FlagLoading"},
	{"stale", "FlagStale"},
	{"skip_monitor", "FlagSkipMonitor"},
	{"skip_slowlog", "FlagSkipSlowlog"},
	{"asking", "FlagAsking"},
	{"fast", "FlagFast"},
	{"no_auth", "FlagNoAuth"},
	{"no_mandatory_keys", "FlagNoMandatoryKeys"},
	{"no_async_loading", "FlagNoAsyncLoading"},
	{"no_multi", "FlagNoMulti"},
	{"allow_busy", "FlagAllowBusy"},
}

// keySpecFlags maps key-spec flag names to Go constants, in output order.
var keySpecFlags = []struct{ name, ident string }{
	{"RO", "KeyRO"},
	{"RW", "KeyRW"},
	{"OW", "KeyOW"},
	{"RM", "KeyRM"},
	{"access", "KeyAccess"},
	{"update", "KeyUpdate"},
	{"insert", "KeyInsert"},
	{"delete", "KeyDelete"},
	{"not_key", "KeyNotKey"},
	{"incomplete", "KeyIncomplete"},
	{"variable_flags", "KeyVariableFlags"},
}

// writeKeyFlags are the key-spec flags that make a key "written".
var writeKeyFlags = map[string]bool{
	"RW": true, "OW": true, "RM": true, "insert": true, "delete": true, "update": true,
}

type keySpec struct {
	notes      string
	flags      []string
	bsType     string // index, keyword, unknown
	bsIndex    int
	bsKeyword  string
	bsStart    int
	fkType     string // range, keynum, unknown
	lastKey    int
	keyStep    int
	limit      int
	keyNumIdx  int
	firstKey   int
	writeFlags bool
}

type command struct {
	name     string // lower case, "parent|sub" for subcommands
	arity    int
	flags    []string
	tips     []string
	keySpecs []keySpec
	subs     []*command
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "redis-server address (Redis 7.0)")
	out := flag.String("out", "internal/command/zz_table_gen.go", "output file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("gen: ")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: *addr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()

	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		log.Fatalf("INFO server: %v", err)
	}
	version := infoField(info, "redis_version")
	if !strings.HasPrefix(version, "7.0.") {
		log.Printf("warning: redis_version %q is not 7.0.x; the table targets Redis 7.0", version)
	}

	raw, err := rdb.Do(ctx, "COMMAND").Slice()
	if err != nil {
		log.Fatalf("COMMAND: %v", err)
	}
	var cmds []*command
	for _, r := range raw {
		c, err := parseCommand(r)
		if err != nil {
			log.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })

	src, err := render(version, cmds)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	n := len(cmds)
	for _, c := range cmds {
		n += len(c.subs)
	}
	log.Printf("wrote %s: %d commands and subcommands from Redis %s", *out, n, version)
}

func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// parseCommand decodes one COMMAND entry:
// [name, arity, flags, first, last, step, acl categories, tips, key specs, subcommands].
func parseCommand(r any) (*command, error) {
	a, ok := r.([]any)
	if !ok || len(a) < 10 {
		return nil, fmt.Errorf("unexpected COMMAND entry %#v (need Redis 7 with 10 fields)", r)
	}
	c := &command{}
	var err error
	if c.name, err = str(a[0]); err != nil {
		return nil, err
	}
	c.name = strings.ToLower(c.name)
	if c.arity, err = num(a[1]); err != nil {
		return nil, fmt.Errorf("%s arity: %w", c.name, err)
	}
	if c.flags, err = strs(a[2]); err != nil {
		return nil, fmt.Errorf("%s flags: %w", c.name, err)
	}
	for _, f := range c.flags {
		if flagIdent(commandFlags, f) == "" {
			return nil, fmt.Errorf("%s: unknown command flag %q: add it to package command and to the generator", c.name, f)
		}
	}
	if c.tips, err = strs(a[7]); err != nil {
		return nil, fmt.Errorf("%s tips: %w", c.name, err)
	}
	sort.Strings(c.tips)
	specs, ok := a[8].([]any)
	if !ok {
		return nil, fmt.Errorf("%s: key specs are %T", c.name, a[8])
	}
	for i, s := range specs {
		ks, err := parseKeySpec(s)
		if err != nil {
			return nil, fmt.Errorf("%s key spec %d: %w", c.name, i, err)
		}
		c.keySpecs = append(c.keySpecs, ks)
	}
	subs, ok := a[9].([]any)
	if !ok {
		return nil, fmt.Errorf("%s: subcommands are %T", c.name, a[9])
	}
	for _, s := range subs {
		sc, err := parseCommand(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		if !strings.HasPrefix(sc.name, c.name+"|") {
			return nil, fmt.Errorf("%s: subcommand %q does not start with %q", c.name, sc.name, c.name+"|")
		}
		c.subs = append(c.subs, sc)
	}
	sort.Slice(c.subs, func(i, j int) bool { return c.subs[i].name < c.subs[j].name })
	return c, nil
}

func parseKeySpec(r any) (keySpec, error) {
	var ks keySpec
	m, err := flatMap(r)
	if err != nil {
		return ks, err
	}
	if n, ok := m["notes"]; ok {
		if ks.notes, err = str(n); err != nil {
			return ks, err
		}
	}
	if ks.flags, err = strs(m["flags"]); err != nil {
		return ks, fmt.Errorf("flags: %w", err)
	}
	for _, f := range ks.flags {
		if flagIdent(keySpecFlags, f) == "" {
			return ks, fmt.Errorf("unknown key-spec flag %q: add it to package command and to the generator", f)
		}
		if writeKeyFlags[f] {
			ks.writeFlags = true
		}
	}

	bs, err := flatMap(m["begin_search"])
	if err != nil {
		return ks, fmt.Errorf("begin_search: %w", err)
	}
	if ks.bsType, err = str(bs["type"]); err != nil {
		return ks, err
	}
	switch ks.bsType {
	case "index":
		spec, err := flatMap(bs["spec"])
		if err != nil {
			return ks, err
		}
		if ks.bsIndex, err = num(spec["index"]); err != nil {
			return ks, err
		}
		if ks.bsIndex < 1 {
			return ks, fmt.Errorf("begin_search index %d < 1", ks.bsIndex)
		}
	case "keyword":
		spec, err := flatMap(bs["spec"])
		if err != nil {
			return ks, err
		}
		if ks.bsKeyword, err = str(spec["keyword"]); err != nil {
			return ks, err
		}
		if ks.bsKeyword == "" {
			return ks, errors.New("empty begin_search keyword")
		}
		ks.bsKeyword = strings.ToUpper(ks.bsKeyword)
		if ks.bsStart, err = num(spec["startfrom"]); err != nil {
			return ks, err
		}
	case "unknown":
	default:
		return ks, fmt.Errorf("unknown begin_search type %q", ks.bsType)
	}

	fk, err := flatMap(m["find_keys"])
	if err != nil {
		return ks, fmt.Errorf("find_keys: %w", err)
	}
	if ks.fkType, err = str(fk["type"]); err != nil {
		return ks, err
	}
	switch ks.fkType {
	case "range":
		spec, err := flatMap(fk["spec"])
		if err != nil {
			return ks, err
		}
		if ks.lastKey, err = num(spec["lastkey"]); err != nil {
			return ks, err
		}
		if ks.keyStep, err = num(spec["keystep"]); err != nil {
			return ks, err
		}
		if ks.limit, err = num(spec["limit"]); err != nil {
			return ks, err
		}
		ks.keyNumIdx = -1
	case "keynum":
		spec, err := flatMap(fk["spec"])
		if err != nil {
			return ks, err
		}
		if ks.keyNumIdx, err = num(spec["keynumidx"]); err != nil {
			return ks, err
		}
		if ks.firstKey, err = num(spec["firstkey"]); err != nil {
			return ks, err
		}
		if ks.keyStep, err = num(spec["keystep"]); err != nil {
			return ks, err
		}
	case "unknown":
		ks.keyNumIdx = -1
	default:
		return ks, fmt.Errorf("unknown find_keys type %q", ks.fkType)
	}
	if (ks.bsType == "unknown") != (ks.fkType == "unknown") {
		return ks, fmt.Errorf("begin_search %q with find_keys %q is not supported", ks.bsType, ks.fkType)
	}
	if ks.fkType != "unknown" && ks.keyStep < 1 {
		return ks, fmt.Errorf("keystep %d < 1", ks.keyStep)
	}
	return ks, nil
}

func flatMap(r any) (map[string]any, error) {
	a, ok := r.([]any)
	if !ok {
		// A RESP2 empty map can come back as nil/empty.
		if r == nil {
			return map[string]any{}, nil
		}
		return nil, fmt.Errorf("expected flat map, got %T", r)
	}
	if len(a)%2 != 0 {
		return nil, fmt.Errorf("flat map with odd length %d", len(a))
	}
	m := make(map[string]any, len(a)/2)
	for i := 0; i < len(a); i += 2 {
		k, err := str(a[i])
		if err != nil {
			return nil, err
		}
		m[k] = a[i+1]
	}
	return m, nil
}

func str(r any) (string, error) {
	switch v := r.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	}
	return "", fmt.Errorf("expected string, got %T (%v)", r, r)
}

func num(r any) (int, error) {
	switch v := r.(type) {
	case int64:
		return int(v), nil
	case string:
		return strconv.Atoi(v)
	}
	return 0, fmt.Errorf("expected integer, got %T (%v)", r, r)
}

func strs(r any) ([]string, error) {
	if r == nil {
		return nil, nil
	}
	a, ok := r.([]any)
	if !ok {
		return nil, fmt.Errorf("expected array, got %T", r)
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, err := str(e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func render(version string, cmds []*command) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by go run ./internal/command/gen; DO NOT EDIT.\n")
	b.WriteString("// Regenerate against a throwaway Redis 7.0 (see the gen package doc):\n")
	b.WriteString("//\tgo run ./internal/command/gen -addr 127.0.0.1:7399 -out internal/command/zz_table_gen.go\n\n")
	b.WriteString("package command\n\n")
	fmt.Fprintf(&b, "// RedisVersion is the redis-server version the command table was generated\n")
	fmt.Fprintf(&b, "// from (INFO server redis_version).\n")
	fmt.Fprintf(&b, "const RedisVersion = %q\n\n", version)
	b.WriteString("// redisCommands is every command of Redis " + version + " with its subcommands, as\n")
	b.WriteString("// reported by COMMAND: Redis facts only. Class, Policy and Refusal are\n")
	b.WriteString("// filled in by policy.go; Subcommands and Parent are linked at init.\n")
	b.WriteString("var redisCommands = []*Spec{\n")
	for _, c := range cmds {
		writeSpec(&b, c)
		for _, s := range c.subs {
			writeSpec(&b, s)
		}
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gofmt generated code: %w\n%s", err, b.Bytes())
	}
	return src, nil
}

func writeSpec(b *bytes.Buffer, c *command) {
	fmt.Fprintf(b, "{\nName: %q,\nArity: %d,\n", c.name, c.arity)
	if f := flagExpr(commandFlags, c.flags, ""); f != "" {
		fmt.Fprintf(b, "Flags: %s,\n", f)
	}
	if len(c.keySpecs) > 0 {
		b.WriteString("KeySpecs: []KeySpec{\n")
		for _, ks := range c.keySpecs {
			if ks.notes != "" {
				for _, line := range strings.Split(ks.notes, "\n") {
					fmt.Fprintf(b, "// %s\n", strings.TrimSpace(line))
				}
			}
			b.WriteString("{")
			switch ks.bsType {
			case "index":
				fmt.Fprintf(b, "Begin: BeginSearch{Index: %d}, ", ks.bsIndex)
			case "keyword":
				fmt.Fprintf(b, "Begin: BeginSearch{Keyword: %q, StartFrom: %d}, ", ks.bsKeyword, ks.bsStart)
			case "unknown":
				b.WriteString("Begin: BeginSearch{}, ")
			}
			switch ks.fkType {
			case "range":
				fmt.Fprintf(b, "Find: FindKeys{LastKey: %d, KeyStep: %d, Limit: %d, KeyNumIdx: -1}, ", ks.lastKey, ks.keyStep, ks.limit)
			case "keynum":
				fmt.Fprintf(b, "Find: FindKeys{KeyNumIdx: %d, FirstKey: %d, KeyStep: %d}, ", ks.keyNumIdx, ks.firstKey, ks.keyStep)
			case "unknown":
				b.WriteString("Find: FindKeys{KeyNumIdx: -1}, ")
			}
			fmt.Fprintf(b, "Write: %t, Flags: %s},\n", ks.writeFlags, flagExpr(keySpecFlags, ks.flags, "0"))
		}
		b.WriteString("},\n")
	}
	if len(c.tips) > 0 {
		b.WriteString("Tips: []string{")
		for i, t := range c.tips {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(b, "%q", t)
		}
		b.WriteString("},\n")
	}
	b.WriteString("},\n")
}

// flagIdent returns the Go identifier for Redis flag name, "" if unknown.
func flagIdent(table []struct{ name, ident string }, name string) string {
	for _, f := range table {
		if f.name == name {
			return f.ident
		}
	}
	return ""
}

// flagExpr renders flags as an OR of Go constants in table order, or zero.
func flagExpr(table []struct{ name, ident string }, flags []string, zero string) string {
	var parts []string
	for _, f := range table {
		if slices.Contains(flags, f.name) {
			parts = append(parts, f.ident)
		}
	}
	if len(parts) == 0 {
		return zero
	}
	return strings.Join(parts, " | ")
}
