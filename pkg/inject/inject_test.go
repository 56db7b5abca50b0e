package inject

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/floodgate/floodgate/pkg/sidecar"
)

// -update rewrites the golden files from the current output.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/inject -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./pkg/inject -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func inputs(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test inputs %s: %v", pattern, err)
	}
	return files
}

// strictSerializer decodes JSON into client-go's types and fails on
// unknown or duplicate fields.
var strictSerializer = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Strict: true})

// strict decodes one Kubernetes manifest with client-go's scheme, unknown
// and duplicate fields being errors.
func strict(t *testing.T, doc []byte) runtime.Object {
	t.Helper()
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatalf("yaml: %v\n%s", err, doc)
	}
	obj, _, err := strictSerializer.Decode(js, nil, nil)
	if err != nil {
		t.Fatalf("strict decode: %v\n%s", err, doc)
	}
	return obj
}

// documents splits a stream into its non-empty documents.
func documents(src []byte) [][]byte {
	var docs [][]byte
	for _, c := range splitDocuments(src) {
		var n any
		if err := sigsyaml.Unmarshal(c.text, &n); err == nil && n != nil {
			docs = append(docs, c.text)
		}
	}
	return docs
}

// template returns a decoded workload's pod template, nil for kinds
// without one.
func template(obj runtime.Object) *corev1.PodTemplateSpec {
	gvk := obj.GetObjectKind().GroupVersionKind()
	path, ok := templatePaths[gvk.Group+"/"+gvk.Kind]
	if !ok {
		return nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil
	}
	for _, k := range path {
		if m, ok = m[k].(map[string]any); !ok {
			return nil
		}
	}
	var tmpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &tmpl); err != nil {
		return nil
	}
	return &tmpl
}

// TestManifestsGolden runs `sidecar inject`'s transformation on each
// testdata/manifests/*.in.yaml and compares the result with *.out.yaml.
func TestManifestsGolden(t *testing.T) {
	t.Parallel()
	for _, in := range inputs(t, "manifests/*.in.yaml") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := Manifests(src, Options{})
			if err != nil {
				t.Fatalf("Manifests: %v", err)
			}
			golden(t, strings.TrimSuffix(in, ".in.yaml")+".out.yaml", got)
		})
	}
}

// TestManifestsProperties checks, for every golden pair, what must hold
// whatever the layout: every output document decodes strictly into its
// Kubernetes type; each template that asked for injection equals what
// Mutate makes of the input's; documents that did not ask are copied byte
// for byte; where the change was spliced, the input's lines all appear in
// the output, in order (nothing of the user's was rewritten); and a second
// run changes nothing.
func TestManifestsProperties(t *testing.T) {
	t.Parallel()
	for _, in := range inputs(t, "manifests/*.in.yaml") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, res, err := Manifests(src, Options{})
			if err != nil {
				t.Fatalf("Manifests: %v", err)
			}
			inDocs, outDocs := documents(src), documents(out)
			if len(inDocs) != len(outDocs) {
				t.Fatalf("%d documents in, %d out", len(inDocs), len(outDocs))
			}
			injected := 0
			for i := range inDocs {
				before, after := strict(t, inDocs[i]), strict(t, outDocs[i])
				bt, at := template(before), template(after)
				if bt == nil {
					if !bytes.Equal(inDocs[i], outDocs[i]) {
						t.Errorf("document %d has no pod template but changed", i+1)
					}
					continue
				}
				want := bt.DeepCopy()
				changed, err := Mutate(want, Options{})
				if err != nil {
					t.Fatalf("document %d: Mutate: %v", i+1, err)
				}
				if !changed {
					if !bytes.Equal(inDocs[i], outDocs[i]) {
						t.Errorf("document %d did not ask for injection but changed:\n%s", i+1, outDocs[i])
					}
					continue
				}
				injected++
				if !equalJSON(t, at, want) {
					t.Errorf("document %d: template is not Mutate's:\ngot  %s\nwant %s", i+1, mustJSON(t, at), mustJSON(t, want))
				}
				if !strings.Contains(in, "flow-style") && !subsequence(lines(inDocs[i]), lines(outDocs[i])) {
					t.Errorf("document %d: the input's lines are not all kept, in order, in the output:\n%s", i+1, outDocs[i])
				}
			}
			if injected != len(res.Injected) {
				t.Errorf("Result.Injected = %q, want %d entries", res.Injected, injected)
			}
			again, res2, err := Manifests(out, Options{})
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			if !bytes.Equal(again, out) || len(res2.Injected) != 0 {
				t.Errorf("second run changed the output (not idempotent); injected %q:\n%s", res2.Injected, again)
			}
		})
	}
}

func lines(b []byte) []string { return strings.Split(strings.TrimRight(string(b), "\n"), "\n") }

// subsequence reports whether every element of a appears in b, in order.
func subsequence(a, b []string) bool {
	j := 0
	for _, s := range b {
		if j < len(a) && a[j] == s {
			j++
		}
	}
	return j == len(a)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := sigsyaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return mustJSON(t, a) == mustJSON(t, b)
}

// TestManifestsErrors checks that each testdata/errors/*.yaml fails with
// the lines of its .err file in the message.
func TestManifestsErrors(t *testing.T) {
	t.Parallel()
	for _, in := range inputs(t, "errors/*.yaml") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(in, ".yaml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := Manifests(src, Options{})
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			for _, line := range lines(want) {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error does not contain %q:\n%v", line, err)
				}
			}
		})
	}
}

func TestManifestsWarnsAboutWorkloadAnnotation(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("testdata/manifests/workload-annotated.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := Manifests(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Deployment misplaced: floodgate.io/inject is on the Deployment's own metadata, not on its pod template (spec.template.metadata.annotations): not injected"}
	if !slices.Equal(res.Warnings, want) {
		t.Errorf("warnings:\ngot  %q\nwant %q", res.Warnings, want)
	}
}

func pod(annotations map[string]string, containers ...corev1.Container) *corev1.PodTemplateSpec {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app", Image: "registry.example/app:1.0.0"}}
	}
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: containers},
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestMutate(t *testing.T) {
	t.Parallel()
	base := map[string]string{AnnotationInject: "true", AnnotationConfig: "limits"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name        string
		tmpl        *corev1.PodTemplateSpec
		opts        Options
		wantChanged bool
		wantInit    []string
		wantVolumes int
		wantImage   string
	}{
		{name: "not annotated", tmpl: pod(nil)},
		{name: "opted out", tmpl: pod(map[string]string{AnnotationInject: "false"})},
		{name: "sidecar mode", tmpl: pod(with()), wantChanged: true, wantInit: []string{SidecarName}, wantVolumes: 1, wantImage: DefaultImage},
		{name: "envoy mode by annotation", tmpl: pod(with(AnnotationMode, "envoy", AnnotationEnvoyConfig, "e")), wantChanged: true,
			wantInit: []string{SidecarName, EnvoyName}, wantVolumes: 2, wantImage: DefaultImage},
		{name: "envoy mode by option", tmpl: pod(with(AnnotationEnvoyConfig, "e")), opts: Options{Mode: ModeEnvoy}, wantChanged: true,
			wantInit: []string{SidecarName, EnvoyName}, wantVolumes: 2, wantImage: DefaultImage},
		{name: "annotation beats option", tmpl: pod(with(AnnotationMode, "sidecar")), opts: Options{Mode: ModeEnvoy}, wantChanged: true,
			wantInit: []string{SidecarName}, wantVolumes: 1, wantImage: DefaultImage},
		{name: "custom image", tmpl: pod(with()), opts: Options{Image: "registry.example/floodgate:9.9.9"}, wantChanged: true,
			wantInit: []string{SidecarName}, wantVolumes: 1, wantImage: "registry.example/floodgate:9.9.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			changed, err := Mutate(tt.tmpl, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged {
				t.Fatalf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if got := names(tt.tmpl.Spec.InitContainers); !slices.Equal(got, tt.wantInit) {
				t.Errorf("init containers = %q, want %q", got, tt.wantInit)
			}
			if got := len(tt.tmpl.Spec.Volumes); got != tt.wantVolumes {
				t.Errorf("%d volumes, want %d", got, tt.wantVolumes)
			}
			if !tt.wantChanged {
				return
			}
			if got := tt.tmpl.Spec.InitContainers[0].Image; got != tt.wantImage {
				t.Errorf("image = %q, want %q", got, tt.wantImage)
			}
			if got := tt.tmpl.Annotations[AnnotationStatus]; got != "injected" {
				t.Errorf("%s = %q, want injected", AnnotationStatus, got)
			}
			again := tt.tmpl.DeepCopy()
			if changed, err := Mutate(again, tt.opts); err != nil || changed {
				t.Errorf("second Mutate: changed %v, err %v; want no change", changed, err)
			}
		})
	}
}

// A template injected in sidecar mode and switched to envoy mode gets the
// Envoy and its volume, and keeps what it had.
func TestMutateModeSwitch(t *testing.T) {
	t.Parallel()
	tmpl := pod(map[string]string{AnnotationInject: "true", AnnotationConfig: "limits"})
	if _, err := Mutate(tmpl, Options{}); err != nil {
		t.Fatal(err)
	}
	tmpl.Annotations[AnnotationMode] = "envoy"
	tmpl.Annotations[AnnotationEnvoyConfig] = "envoy"
	changed, err := Mutate(tmpl, Options{})
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if got, want := names(tmpl.Spec.InitContainers), []string{SidecarName, EnvoyName}; !slices.Equal(got, want) {
		t.Errorf("init containers = %q, want %q", got, want)
	}
}

// TestSidecarFlagsMatchPorts parses the injected container's arguments
// with the sidecar's own settings parser: the ports it will listen on must
// be the ports declared and probed.
func TestSidecarFlagsMatchPorts(t *testing.T) {
	t.Parallel()
	c := sidecarContainer(DefaultImage, "")
	if c.Args[0] != "serve" {
		t.Fatalf("args %q do not start with serve", c.Args)
	}
	s, err := sidecar.ParseSettings(c.Args[1:], func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.GRPCAddr != ":8081" || s.HTTPAddr != ":8080" || s.Config != LimitsDir {
		t.Errorf("settings: grpc %q http %q config %q", s.GRPCAddr, s.HTTPAddr, s.Config)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["floodgate-grpc"] != GRPCPort || ports["floodgate-http"] != HTTPPort {
		t.Errorf("declared ports %v", ports)
	}
	if c.StartupProbe.GRPC.Port != GRPCPort || c.LivenessProbe.HTTPGet.Port.IntValue() != HTTPPort || c.ReadinessProbe.HTTPGet.Port.IntValue() != HTTPPort {
		t.Errorf("probes do not use the ports the flags set")
	}
}

// TestPatchGolden checks the webhook's JSON patch for each
// testdata/webhook/*.pod.json, and that the patch, applied to the pod as a
// JSON patch library applies it (as the API server does), gives Mutate's
// result.
func TestPatchGolden(t *testing.T) {
	t.Parallel()
	for _, in := range inputs(t, "webhook/*.pod.json") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var p corev1.Pod
			if _, _, err := strictSerializer.Decode(raw, nil, &p); err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			tmpl := &corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
			ops, err := Patch(tmpl, Options{})
			if err != nil {
				t.Fatal(err)
			}
			patch, err := marshalIndent(ops)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(in, ".pod.json")+".patch.json", patch)

			want := tmpl.DeepCopy()
			if _, err := Mutate(want, Options{}); err != nil {
				t.Fatal(err)
			}
			decoded, err := jsonpatch.DecodePatch(patch)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := decoded.Apply(raw)
			if err != nil {
				t.Fatalf("applying the patch: %v", err)
			}
			var got corev1.Pod
			if _, _, err := strictSerializer.Decode(patched, nil, &got); err != nil {
				t.Fatalf("patched pod: %v", err)
			}
			if !equalJSON(t, &corev1.PodTemplateSpec{ObjectMeta: got.ObjectMeta, Spec: got.Spec}, want) {
				t.Errorf("patched pod is not Mutate's:\ngot  %s\nwant %s", mustJSON(t, got), mustJSON(t, want))
			}
		})
	}
}

func marshalIndent(ops []Operation) ([]byte, error) {
	if len(ops) == 0 {
		return []byte("[]\n"), nil
	}
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, op := range ops {
		js, err := op.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.WriteString("  ")
		b.Write(js)
		if i < len(ops)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return b.Bytes(), nil
}
