// Package deploy holds jupiter's Kubernetes manifests (a kustomize base and
// an example overlay) and this test, which renders them in-process with the
// kustomize API, decodes every object strictly into the typed Kubernetes API
// structs (a misspelled or misplaced field fails) and checks that the pieces
// fit: ports, probes, Services, flags, shutdown timing, security.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"

	"github.com/alphauslabs/jupiter/internal/config"
)

// futureFlags are JUPITER_* variables the manifests may set even where the
// binary has no such flag yet: the password flags came in a later issue than
// the manifests. The Deployment reads them from the optional Secret
// jupiter-secrets, and jupiter ignores variables that are not flags. Once
// every build that matters has them, drop this exemption (the test logs
// which ones are real flags already).
var futureFlags = map[string]bool{
	"JUPITER_PASSWORD":         true,
	"JUPITER_ADMIN_PASSWORD":   true,
	"JUPITER_BACKEND_PASSWORD": true,
}

// otherEnv are the only variables besides JUPITER_* ones the container may
// have, so a misspelled JUPITER_ name cannot slip through as "not ours".
var otherEnv = map[string]bool{
	"POD_IP":     true, // downward API, used by JUPITER_HEDGE_ADDR
	"GOMEMLIMIT": true, // Go runtime soft memory limit
}

const (
	label      = "app.kubernetes.io/name"
	labelValue = "jupiter"
	distroless = 65532 // the distroless "nonroot" uid/gid
	secretName = "jupiter-secrets"
	fakePodIP  = "10.8.0.42"
	wiAnnot    = "iam.gke.io/gcp-service-account"
)

type kustomization struct {
	dir       string
	namespace string // "" for the base
	image     string
	// The ConfigMap it must produce (key → value), exactly.
	wantConfig map[string]string
	// needsBackends: the base names no Redis node (every overlay does), so
	// its configuration is validated with a stand-in.
	needsBackends bool
}

var kustomizations = []kustomization{
	{
		dir:           "base",
		image:         "jupiter:latest",
		needsBackends: true,
		wantConfig: map[string]string{
			"JUPITER_LISTEN":           ":6379",
			"JUPITER_ADMIN_LISTEN":     ":9090",
			"JUPITER_LOG_LEVEL":        "info",
			"JUPITER_LOG_FORMAT":       "json",
			"JUPITER_SHUTDOWN_TIMEOUT": "20s",
			"JUPITER_DRAIN_DELAY":      "2s",
		},
	},
	{
		dir:       "overlays/example",
		namespace: "jupiter",
		image:     "gcr.io/PROJECT_ID/jupiter:v0.1.0",
		wantConfig: map[string]string{
			"JUPITER_LISTEN":           ":6379",
			"JUPITER_ADMIN_LISTEN":     ":9090",
			"JUPITER_LOG_LEVEL":        "info",
			"JUPITER_LOG_FORMAT":       "json",
			"JUPITER_SHUTDOWN_TIMEOUT": "20s",
			"JUPITER_DRAIN_DELAY":      "2s",
			"JUPITER_SPANNER_DB":       "projects/PROJECT_ID/instances/jupiter/databases/jupiter",
			"JUPITER_BACKENDS":         "10.0.0.3:6379,10.0.0.4:6379,10.0.0.5:6379",
		},
	},
}

// objects is one rendering, decoded.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	accounts    map[string]*corev1.ServiceAccount
	pdbs        map[string]*policyv1.PodDisruptionBudget
	ids         []string // "Kind/namespace/name", in rendering order
}

// strictDecode decodes JSON into v the way the API server does in strict
// mode: unknown fields, duplicate fields and fields matching only
// case-insensitively are errors.
func strictDecode(data []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(data, v, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decode sorts JSON objects into typed structs; any kind this test does not
// know about is an error, so a new manifest comes with new checks.
func decode(docs [][]byte) (*objects, error) {
	o := &objects{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		accounts:    map[string]*corev1.ServiceAccount{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
	}
	var errs []error
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := json.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, err)
			continue
		}
		var (
			obj  any
			meta *metav1.ObjectMeta
		)
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			x := &appsv1.Deployment{}
			obj, meta = x, &x.ObjectMeta
		case "v1 Service":
			x := &corev1.Service{}
			obj, meta = x, &x.ObjectMeta
		case "v1 ConfigMap":
			x := &corev1.ConfigMap{}
			obj, meta = x, &x.ObjectMeta
		case "v1 ServiceAccount":
			x := &corev1.ServiceAccount{}
			obj, meta = x, &x.ObjectMeta
		case "policy/v1 PodDisruptionBudget":
			x := &policyv1.PodDisruptionBudget{}
			obj, meta = x, &x.ObjectMeta
		default:
			errs = append(errs, fmt.Errorf("unexpected object %s %s: add it to this test", tm.APIVersion, tm.Kind))
			continue
		}
		if err := strictDecode(doc, obj); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tm.Kind, err))
			continue
		}
		id := tm.Kind + "/" + meta.Namespace + "/" + meta.Name
		if slices.Contains(o.ids, id) {
			errs = append(errs, fmt.Errorf("%s appears twice", id))
			continue
		}
		o.ids = append(o.ids, id)
		switch x := obj.(type) {
		case *appsv1.Deployment:
			o.deployments[meta.Name] = x
		case *corev1.Service:
			o.services[meta.Name] = x
		case *corev1.ConfigMap:
			o.configMaps[meta.Name] = x
		case *corev1.ServiceAccount:
			o.accounts[meta.Name] = x
		case *policyv1.PodDisruptionBudget:
			o.pdbs[meta.Name] = x
		}
	}
	return o, errors.Join(errs...)
}

// renderJSON builds a kustomization in-process, as `kubectl apply -k` would,
// and returns each object as JSON.
func renderJSON(t *testing.T, dir string) [][]byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		docs = append(docs, b)
	}
	return docs
}

func render(t *testing.T, dir string) *objects {
	t.Helper()
	o, err := decode(renderJSON(t, dir))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return o
}

// flagEnv is every JUPITER_* variable the binary reads, from the real flag
// set.
func flagEnv(t *testing.T) map[string]string {
	t.Helper()
	c := config.Default()
	fs := flag.NewFlagSet("jupiter serve", flag.ContinueOnError)
	c.Bind(fs)
	env := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { env[config.EnvName(f.Name)] = f.Name })
	if len(env) < 10 {
		t.Fatalf("only %d flags bound: is config.Bind complete?", len(env))
	}
	for name := range futureFlags {
		if _, ok := env[name]; ok {
			t.Logf("%s is a real flag now (--%s); its futureFlags exemption is unused", name, env[name])
		}
	}
	return env
}

func TestStrictDecodeRejectsUnknownFields(t *testing.T) {
	docs := renderJSON(t, "base")
	var dep []byte
	for _, d := range docs {
		if bytes.Contains(d, []byte(`"kind":"Deployment"`)) {
			dep = d
		}
	}
	if dep == nil {
		t.Fatal("no Deployment rendered")
	}
	if _, err := decode([][]byte{dep}); err != nil {
		t.Fatalf("the rendered Deployment must decode: %v", err)
	}
	for name, mutate := range map[string]func(c map[string]any){
		"unknown field":    func(c map[string]any) { c["livenessProbes"] = c["livenessProbe"] },
		"wrong case":       func(c map[string]any) { c["ReadinessProbe"] = c["readinessProbe"]; delete(c, "readinessProbe") },
		"misplaced field":  func(c map[string]any) { c["terminationGracePeriodSeconds"] = 30 },
		"nested unknown":   func(c map[string]any) { c["lifecycle"].(map[string]any)["preStop"].(map[string]any)["sleeps"] = 1 },
		"wrong value type": func(c map[string]any) { c["args"] = "serve" },
	} {
		var m map[string]any
		if err := json.Unmarshal(dep, &m); err != nil {
			t.Fatal(err)
		}
		spec := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		mutate(spec["containers"].([]any)[0].(map[string]any))
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decode([][]byte{b}); err == nil {
			t.Errorf("%s: strict decoding accepted a broken Deployment", name)
		}
	}
	if _, err := decode([][]byte{[]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`)}); err == nil {
		t.Error("an object of a kind this test does not check was accepted")
	}
}

func TestKustomizations(t *testing.T) {
	flags := flagEnv(t)
	for _, k := range kustomizations {
		t.Run(strings.ReplaceAll(k.dir, "/", "_"), func(t *testing.T) {
			checkKustomization(t, k, render(t, k.dir), flags)
		})
	}
}

func checkKustomization(t *testing.T, k kustomization, o *objects, flags map[string]string) {
	// The objects, exactly.
	cmName := ""
	for name := range o.configMaps {
		if strings.HasPrefix(name, "jupiter-config-") {
			cmName = name
		}
	}
	want := []string{
		"ServiceAccount/" + k.namespace + "/jupiter",
		"ConfigMap/" + k.namespace + "/" + cmName,
		"Service/" + k.namespace + "/jupiter-admin",
		"Service/" + k.namespace + "/jupiter-redis",
		"Deployment/" + k.namespace + "/jupiter",
		"PodDisruptionBudget/" + k.namespace + "/jupiter",
	}
	got := slices.Clone(o.ids)
	sort.Strings(got)
	sort.Strings(want)
	if cmName == "" || !slices.Equal(got, want) {
		t.Fatalf("rendered objects:\n  %s\nwant (ConfigMap jupiter-config-<hash>):\n  %s",
			strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	dep := o.deployments["jupiter"]
	cm := o.configMaps[cmName]
	sa := o.accounts["jupiter"]
	pdb := o.pdbs["jupiter"]
	redis := o.services["jupiter-redis"]
	adminSvc := o.services["jupiter-admin"]
	for _, m := range []metav1.ObjectMeta{dep.ObjectMeta, cm.ObjectMeta, sa.ObjectMeta, pdb.ObjectMeta, redis.ObjectMeta, adminSvc.ObjectMeta} {
		if m.Labels[label] != labelValue {
			t.Errorf("%s: label %s=%q, want %q", m.Name, label, m.Labels[label], labelValue)
		}
	}

	// The pods.
	pod := dep.Spec.Template
	podLabels := labels.Set(pod.Labels)
	if pod.Labels[label] != labelValue {
		t.Errorf("pod template label %s=%q, want %q", label, pod.Labels[label], labelValue)
	}
	selects := func(what string, sel *metav1.LabelSelector) {
		t.Helper()
		if sel == nil || len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			t.Errorf("%s: empty selector", what)
			return
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if !s.Matches(podLabels) {
			t.Errorf("%s: selector %v does not select the pods (labels %v)", what, s, podLabels)
		}
	}
	selects("Deployment", dep.Spec.Selector)
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", dep.Spec.Replicas)
	}
	if s := dep.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update must keep every pod until its replacement is ready (maxUnavailable 0): %+v", s)
	}
	ps := pod.Spec
	if len(ps.Containers) != 1 || len(ps.InitContainers) != 0 {
		t.Fatalf("want exactly one container, got %d (+%d init)", len(ps.Containers), len(ps.InitContainers))
	}
	c := ps.Containers[0]
	if c.Name != "jupiter" {
		t.Errorf("container name %q, want jupiter", c.Name)
	}
	if c.Image != k.image {
		t.Errorf("image %q, want %q", c.Image, k.image)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q: the image's ENTRYPOINT is /jupiter; set args only", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %q, want [serve …]", c.Args)
	}

	// Ports, by name.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		if p.Name == "" || len(p.Name) > 15 {
			t.Errorf("port %d: name %q must be 1..15 characters (IANA service name)", p.ContainerPort, p.Name)
		}
		if _, dup := ports[p.Name]; dup {
			t.Errorf("port name %q twice", p.Name)
		}
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			t.Errorf("port %s: protocol %s, want TCP", p.Name, p.Protocol)
		}
		ports[p.Name] = p.ContainerPort
	}
	for name, want := range map[string]int32{"resp": 6379, "admin": 9090, "hedge": 7070, "hedge-grpc": 7071} {
		if ports[name] != want {
			t.Errorf("container port %q = %d, want %d", name, ports[name], want)
		}
	}
	if ports["hedge-grpc"] != ports["hedge"]+1 {
		t.Errorf("hedge-grpc (%d) must be hedge (%d) + 1: hedge listens on its port + 1", ports["hedge-grpc"], ports["hedge"])
	}

	// Services: selectors and target ports by name.
	for _, svc := range []*corev1.Service{redis, adminSvc} {
		selects("Service "+svc.Name, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.Type != intstr.String {
				t.Errorf("Service %s port %d: targetPort %v must name a container port", svc.Name, p.Port, p.TargetPort.String())
				continue
			}
			if _, ok := ports[p.TargetPort.StrVal]; !ok {
				t.Errorf("Service %s port %d: targetPort %q is not a container port (%v)", svc.Name, p.Port, p.TargetPort.StrVal, ports)
			}
		}
	}
	servicePort := func(svc *corev1.Service, port int32, target string) {
		t.Helper()
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port || svc.Spec.Ports[0].TargetPort.StrVal != target {
			t.Errorf("Service %s ports %+v, want %d → %s", svc.Name, svc.Spec.Ports, port, target)
		}
	}
	servicePort(redis, 6379, "resp")
	servicePort(adminSvc, 9090, "admin")
	if redis.Spec.Type != "" && redis.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("jupiter-redis type %s: keep the cache inside the cluster (ClusterIP)", redis.Spec.Type)
	}
	if redis.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("jupiter-redis must have a cluster IP: applications connect to one address")
	}
	if adminSvc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("jupiter-admin clusterIP %q, want None (headless: every pod scraped)", adminSvc.Spec.ClusterIP)
	}
	for key, want := range map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(int(ports["admin"])),
		"prometheus.io/path":   "/metrics",
	} {
		if got := adminSvc.Annotations[key]; got != want {
			t.Errorf("jupiter-admin annotation %s=%q, want %q", key, got, want)
		}
	}

	// Probes hit the admin port.
	probe := func(what string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", what, path)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s: path %q, want %q", what, p.HTTPGet.Path, path)
		}
		if p.HTTPGet.Port.Type != intstr.String || p.HTTPGet.Port.StrVal != "admin" {
			t.Errorf("%s: port %s, want the named port admin", what, p.HTTPGet.Port.String())
		}
		if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: scheme %s, want HTTP", what, p.HTTPGet.Scheme)
		}
	}
	probe("readinessProbe", c.ReadinessProbe, "/readyz")
	probe("livenessProbe", c.LivenessProbe, "/healthz")
	probe("startupProbe", c.StartupProbe, "/healthz")
	if p := c.StartupProbe; p != nil {
		period, failures := p.PeriodSeconds, p.FailureThreshold
		if period == 0 {
			period = 10 // the API default
		}
		if failures == 0 {
			failures = 3
		}
		if budget := time.Duration(period*failures) * time.Second; budget < time.Minute {
			t.Errorf("startupProbe allows %v to start; cluster mode reads the ring from Spanner first: want >= 1m", budget)
		}
	}

	// Environment: every variable is a flag (or a known other one).
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].Prefix != "" {
		t.Fatalf("envFrom %+v: want exactly the ConfigMap jupiter-config, no prefix (a Secret's keys must be listed one by one)", c.EnvFrom)
	}
	if ref := c.EnvFrom[0].ConfigMapRef; ref.Name != cmName {
		t.Errorf("envFrom names ConfigMap %q; the rendered one is %q", ref.Name, cmName)
	} else if ref.Optional != nil && *ref.Optional {
		t.Errorf("the ConfigMap holds the flags: it must not be optional")
	}
	if len(cm.BinaryData) != 0 {
		t.Errorf("ConfigMap binaryData %v: environment takes data only", cm.BinaryData)
	}
	isFlag := func(what, name string) {
		t.Helper()
		switch {
		case strings.HasPrefix(name, "JUPITER_"):
			if _, ok := flags[name]; !ok && !futureFlags[name] {
				t.Errorf("%s: %s is not a flag of jupiter serve (flags: %v)", what, name, sortedKeys(flags))
			}
		case !otherEnv[name]:
			t.Errorf("%s: unexpected variable %s (not JUPITER_<FLAG>; add it to otherEnv if intended)", what, name)
		}
	}
	for key := range cm.Data {
		isFlag("ConfigMap "+cmName, key)
	}
	if _, ok := cm.Data["JUPITER_HEDGE_ADDR"]; ok {
		t.Errorf("ConfigMap sets JUPITER_HEDGE_ADDR: each pod builds its own from its IP (the Deployment's env wins)")
	}
	for key, want := range k.wantConfig {
		if got, ok := cm.Data[key]; !ok || got != want {
			t.Errorf("ConfigMap %s=%q, want %q", key, got, want)
		}
	}
	for key := range cm.Data {
		if _, ok := k.wantConfig[key]; !ok {
			t.Errorf("ConfigMap sets %s, which this test does not expect", key)
		}
	}

	// The environment the process sees: the ConfigMap, then env (which wins),
	// with $(VAR) references expanded the way the kubelet does.
	environ := map[string]string{}
	for key, v := range cm.Data {
		environ[key] = v
	}
	defined := map[string]string{}
	secretVars := map[string]bool{}
	for i, e := range c.Env {
		isFlag("env", e.Name)
		if _, dup := defined[e.Name]; dup {
			t.Errorf("env %s defined twice", e.Name)
		}
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expand(e.Value, defined)
		case e.ValueFrom.FieldRef != nil:
			if e.Name != "POD_IP" || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
				t.Errorf("env[%d] %s: unexpected fieldRef %s", i, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			v = fakePodIP
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != secretName || ref.Key != e.Name || ref.Optional == nil || !*ref.Optional {
				t.Errorf("env %s: secretKeyRef %+v, want Secret %s key %s optional: true", e.Name, ref, secretName, e.Name)
			}
			secretVars[e.Name] = true
			continue // absent: the Secret is optional and unknown here
		default:
			t.Errorf("env %s: unexpected valueFrom %+v", e.Name, e.ValueFrom)
		}
		defined[e.Name] = v
		environ[e.Name] = v
	}
	for name := range futureFlags {
		if !secretVars[name] {
			t.Errorf("env %s: want it from the Secret %s (optional)", name, secretName)
		}
	}
	if got := envValue(c.Env, "JUPITER_HEDGE_ADDR"); got != fmt.Sprintf("$(POD_IP):%d", ports["hedge"]) {
		t.Errorf("JUPITER_HEDGE_ADDR=%q, want $(POD_IP):%d (the container port hedge)", got, ports["hedge"])
	}
	if slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_IP" }) >
		slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "JUPITER_HEDGE_ADDR" }) {
		t.Errorf("POD_IP must be defined before JUPITER_HEDGE_ADDR, or $(POD_IP) is not expanded")
	}

	// Flags in args are real flags; then the whole configuration must load
	// and validate exactly as `jupiter serve` would load it.
	cfg := config.Default()
	fs := flag.NewFlagSet("jupiter serve", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	cfg.Bind(fs)
	if err := fs.Parse(c.Args[1:]); err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	if fs.NArg() > 0 {
		t.Errorf("args: unexpected arguments %q", fs.Args())
	}
	if err := config.ApplyEnv(fs, func(k string) string { return environ[k] }); err != nil {
		t.Fatalf("environment: %v", err)
	}
	if k.needsBackends {
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "--backends") {
			t.Errorf("the base names no Redis node; want the --backends error, got %v", err)
		}
		cfg.Backends = []string{"10.0.0.3:6379"} // what every overlay adds
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the configuration the pods get does not validate:\n%v", err)
	}
	if want := strings.Contains(k.wantConfig["JUPITER_SPANNER_DB"], "/"); cfg.Cluster() != want {
		t.Errorf("cluster mode = %v, want %v", cfg.Cluster(), want)
	}
	if want := fakePodIP + ":" + strconv.Itoa(int(ports["hedge"])); cfg.HedgeAddr != want {
		t.Errorf("--hedge-addr resolves to %q, want %q", cfg.HedgeAddr, want)
	}
	for flagName, addr := range map[string]string{"listen": cfg.Listen, "admin-listen": cfg.AdminListen, "hedge-addr": cfg.HedgeAddr} {
		portName := map[string]string{"listen": "resp", "admin-listen": "admin", "hedge-addr": "hedge"}[flagName]
		_, p, err := net.SplitHostPort(addr)
		if err != nil || p != strconv.Itoa(int(ports[portName])) {
			t.Errorf("--%s=%q: its port must be the container port %s (%d)", flagName, addr, portName, ports[portName])
		}
	}

	// Shutdown: the kubelet waits preStop, then SIGTERM starts the drain;
	// SIGKILL comes after terminationGracePeriodSeconds.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("want lifecycle.preStop.sleep (the distroless image has no shell for an exec sleep)")
	}
	if c.Lifecycle.PreStop.Exec != nil || c.Lifecycle.PostStart != nil {
		t.Errorf("the distroless image has no shell: no exec hooks")
	}
	sleep := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if sleep < 3*time.Second || sleep > 15*time.Second {
		t.Errorf("preStop sleep %v: want a few seconds (endpoints must drop the pod first)", sleep)
	}
	if ps.TerminationGracePeriodSeconds == nil {
		t.Fatal("terminationGracePeriodSeconds unset")
	}
	grace := time.Duration(*ps.TerminationGracePeriodSeconds) * time.Second
	for what, drain := range map[string]time.Duration{
		"the configured --drain-delay + --shutdown-timeout": cfg.DrainDelay + cfg.ShutdownTimeout,
		"the default --drain-delay + --shutdown-timeout":    config.Default().DrainDelay + config.Default().ShutdownTimeout,
	} {
		if grace <= sleep+drain {
			t.Errorf("terminationGracePeriodSeconds %v <= preStop %v + %s %v: the drain would be SIGKILLed", grace, sleep, what, drain)
		}
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.Exec != nil {
			t.Errorf("exec probe: the distroless image has no shell")
		}
	}

	// Security.
	if ps.SecurityContext == nil || c.SecurityContext == nil {
		t.Fatalf("want both pod and container securityContext")
	}
	psc, csc := ps.SecurityContext, c.SecurityContext
	runAsNonRoot := firstBool(csc.RunAsNonRoot, psc.RunAsNonRoot)
	runAsUser := firstInt(csc.RunAsUser, psc.RunAsUser)
	runAsGroup := firstInt(csc.RunAsGroup, psc.RunAsGroup)
	seccomp := csc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	switch {
	case runAsNonRoot == nil || !*runAsNonRoot:
		t.Errorf("runAsNonRoot must be true")
	case runAsUser == nil || *runAsUser != distroless:
		t.Errorf("runAsUser %v, want %d (distroless nonroot)", runAsUser, distroless)
	case runAsGroup == nil || *runAsGroup != distroless:
		t.Errorf("runAsGroup %v, want %d (distroless nonroot)", runAsGroup, distroless)
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v, want RuntimeDefault", seccomp)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem must be true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation must be false")
	}
	if csc.Privileged != nil && *csc.Privileged {
		t.Errorf("privileged must not be set")
	}
	if csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) != 0 {
		t.Errorf("capabilities %+v, want drop [ALL], add none", csc.Capabilities)
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		t.Errorf("no host namespaces")
	}
	if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
		t.Errorf("enableServiceLinks must be false: Service env variables (JUPITER_REDIS_PORT, …) share the JUPITER_ prefix of the flags")
	}
	// And even if someone turns them on: no Service may inject a flag.
	for _, svc := range []*corev1.Service{redis, adminSvc} {
		for _, v := range serviceLinkEnv(svc) {
			if _, ok := flags[v]; ok || futureFlags[v] {
				t.Errorf("Service %s would inject %s, a jupiter flag: rename the Service", svc.Name, v)
			}
		}
	}

	// Resources, and GOMEMLIMIT below the memory limit.
	for what, pair := range map[string][2]string{
		"requests.cpu":    {c.Resources.Requests.Cpu().String(), "500m"},
		"requests.memory": {c.Resources.Requests.Memory().String(), "256Mi"},
		"limits.cpu":      {c.Resources.Limits.Cpu().String(), "1"},
		"limits.memory":   {c.Resources.Limits.Memory().String(), "512Mi"},
	} {
		if pair[0] != pair[1] {
			t.Errorf("resources.%s = %s, want %s", what, pair[0], pair[1])
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.Cmp(lim) > 0 {
			t.Errorf("%s request %s > limit %s", r, req.String(), lim.String())
		}
	}
	if gml, err := parseGoMemLimit(environ["GOMEMLIMIT"]); err != nil {
		t.Errorf("GOMEMLIMIT: %v", err)
	} else if lim := c.Resources.Limits.Memory().Value(); gml >= lim || gml < lim/2 {
		t.Errorf("GOMEMLIMIT %s = %d bytes: want between half and all of the memory limit (%d)", environ["GOMEMLIMIT"], gml, lim)
	}

	// Scheduling: spread over nodes and zones, selecting these pods.
	aff := ps.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("want one preferred pod anti-affinity term")
	} else {
		if len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
			t.Errorf("pod anti-affinity must be preferred only: a small cluster must still schedule every replica")
		}
		term := aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
		if term.TopologyKey != "kubernetes.io/hostname" {
			t.Errorf("anti-affinity topologyKey %q, want kubernetes.io/hostname", term.TopologyKey)
		}
		selects("pod anti-affinity", term.LabelSelector)
	}
	if len(ps.TopologySpreadConstraints) != 1 {
		t.Errorf("want one topology spread constraint")
	} else {
		tsc := ps.TopologySpreadConstraints[0]
		if tsc.TopologyKey != "topology.kubernetes.io/zone" || tsc.MaxSkew != 1 {
			t.Errorf("topology spread %+v, want maxSkew 1 over topology.kubernetes.io/zone", tsc)
		}
		selects("topologySpreadConstraints", tsc.LabelSelector)
	}

	// PodDisruptionBudget.
	selects("PodDisruptionBudget", pdb.Spec.Selector)
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
		t.Errorf("PodDisruptionBudget: maxUnavailable %v minAvailable %v, want maxUnavailable 1 only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}

	// Workload Identity.
	if ps.ServiceAccountName != sa.Name {
		t.Errorf("serviceAccountName %q, want %q", ps.ServiceAccountName, sa.Name)
	}
	gsa := regexp.MustCompile(`^jupiter@[A-Za-z0-9_-]+\.iam\.gserviceaccount\.com$`)
	if got := sa.Annotations[wiAnnot]; !gsa.MatchString(got) {
		t.Errorf("ServiceAccount annotation %s=%q, want jupiter@<project>.iam.gserviceaccount.com", wiAnnot, got)
	}

	// Namespace: set on every object by the overlay, none in the base.
	for _, id := range o.ids {
		if ns := strings.Split(id, "/")[1]; ns != k.namespace {
			t.Errorf("%s: namespace %q, want %q", id, ns, k.namespace)
		}
	}
}

// TestKubectlKustomize renders each kustomization with kubectl (the command
// docs/deploy.md uses) and checks it produces the same objects as the
// in-process rendering. Skipped without kubectl: CI need not install it.
func TestKubectlKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH")
	}
	for _, k := range kustomizations {
		t.Run(strings.ReplaceAll(k.dir, "/", "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, kubectl, "kustomize", k.dir)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", k.dir, err, stderr.String())
			}
			nodes, err := kio.FromBytes(out)
			if err != nil {
				t.Fatalf("kubectl kustomize %s: parse output: %v", k.dir, err)
			}
			var docs [][]byte
			for _, n := range nodes {
				b, err := n.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, b)
			}
			viaKubectl, err := decode(docs)
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", k.dir, err)
			}
			inProcess := render(t, k.dir)
			a, b := slices.Clone(viaKubectl.ids), slices.Clone(inProcess.ids)
			sort.Strings(a)
			sort.Strings(b)
			if !slices.Equal(a, b) {
				t.Fatalf("kubectl renders %v, the kustomize API %v", a, b)
			}
			if !reflect.DeepEqual(viaKubectl, inProcess) {
				for _, pair := range [][2]any{
					{viaKubectl.deployments, inProcess.deployments}, {viaKubectl.services, inProcess.services},
					{viaKubectl.configMaps, inProcess.configMaps}, {viaKubectl.accounts, inProcess.accounts},
					{viaKubectl.pdbs, inProcess.pdbs},
				} {
					if !reflect.DeepEqual(pair[0], pair[1]) {
						x, _ := json.MarshalIndent(pair[0], "", " ")
						y, _ := json.MarshalIndent(pair[1], "", " ")
						t.Errorf("kubectl and the kustomize API render differently:\nkubectl: %s\nAPI: %s", x, y)
					}
				}
			}
		})
	}
}

// expand resolves $(VAR) references like the kubelet: only variables
// defined earlier; $$ escapes; unknown references stay as written.
func expand(s string, defined map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			if s[i+1] == '$' {
				b.WriteByte('$')
				i++
				continue
			}
			if s[i+1] == '(' {
				if end := strings.IndexByte(s[i:], ')'); end > 0 {
					if v, ok := defined[s[i+2:i+end]]; ok {
						b.WriteString(v)
						i += end
						continue
					}
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// serviceLinkEnv lists the variables Kubernetes injects for a Service when
// enableServiceLinks is on (only Services with a cluster IP get them).
func serviceLinkEnv(svc *corev1.Service) []string {
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	n := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
	out := []string{n + "_SERVICE_HOST", n + "_SERVICE_PORT", n + "_PORT"}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if p.Name != "" {
			out = append(out, n+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")))
		}
		pfx := fmt.Sprintf("%s_PORT_%d_%s", n, p.Port, proto)
		out = append(out, pfx, pfx+"_PROTO", pfx+"_PORT", pfx+"_ADDR")
	}
	return out
}

// parseGoMemLimit parses GOMEMLIMIT's syntax: a byte count with an optional
// B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a byte count", s)
	}
	return n * mult, nil
}

func firstBool(a, b *bool) *bool {
	if a != nil {
		return a
	}
	return b
}

func firstInt(a, b *int64) *int64 {
	if a != nil {
		return a
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
