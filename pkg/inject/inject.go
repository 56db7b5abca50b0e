// Package inject adds Floodgate to pod templates that ask for it with the
// annotation floodgate.io/inject: "true". One mutation, Mutate, serves both
// the `sidecar inject` command, which rewrites manifests, and the mutating
// admission webhook, which answers the API server with a JSON patch; Patch
// turns the mutation into the RFC 6902 operations both apply.
package inject

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Annotations read from, and written to, a pod template's metadata.
const (
	// AnnotationInject opts a pod template in: "true" injects, "false" (or
	// no annotation) leaves it alone; anything else is an error.
	AnnotationInject = "floodgate.io/inject"
	// AnnotationConfig names the ConfigMap that holds the limits, one
	// domain per key; required when injecting. It is mounted as a
	// directory, so the sidecar's reload follows updates of the ConfigMap.
	AnnotationConfig = "floodgate.io/config"
	// AnnotationMode picks what is injected: "sidecar" (the rate-limit
	// service alone, for pods that already have an Envoy, such as Istio's)
	// or "envoy" (an Envoy in front of the app as well). It overrides
	// Options.Mode.
	AnnotationMode = "floodgate.io/mode"
	// AnnotationEnvoyConfig names the ConfigMap whose key envoy.yaml is
	// the Envoy bootstrap (envoy/sidecar.yaml is one); required in envoy
	// mode.
	AnnotationEnvoyConfig = "floodgate.io/envoy-config"
	// AnnotationRedisSecret optionally names a Secret whose keys are
	// SIDECAR_* settings (SIDECAR_REDIS_URL, SIDECAR_REDIS_CLUSTER, ...),
	// given to the sidecar as environment variables.
	AnnotationRedisSecret = "floodgate.io/redis-secret"
	// AnnotationStatus is set to "injected" on every mutated template, so
	// that a pod which asked for injection and did not get it (the webhook
	// was down and failurePolicy is Ignore) can be found and alerted on.
	AnnotationStatus = "floodgate.io/status"
)

// Images used when Options leave them empty. Pinned: a moving tag would
// let one pod run a different sidecar from its neighbours.
const (
	DefaultImage      = "ghcr.io/floodgate/sidecar:0.1.0"
	DefaultEnvoyImage = "envoyproxy/envoy:v1.36.2"
)

// Names and ports of what Mutate adds. The ports are the sidecar's defaults
// (--grpc-addr :8081, --http-addr :8080) and the listener of the Envoy
// config in envoy/sidecar.yaml (10000, app on 127.0.0.1:8000).
const (
	SidecarName       = "floodgate"
	EnvoyName         = "floodgate-envoy"
	LimitsVolume      = "floodgate-limits"
	EnvoyConfigVolume = "floodgate-envoy-config"
	LimitsDir         = "/etc/floodgate"
	EnvoyConfigDir    = "/etc/envoy"
	GRPCPort          = 8081
	HTTPPort          = 8080
	EnvoyPort         = 10000
	// sidecarUID is the distroless image's nonroot user; envoyUID is the
	// envoy user of the official Envoy image.
	sidecarUID = 65532
	envoyUID   = 101
)

// Mode is what Mutate injects.
type Mode string

// The modes.
const (
	// ModeSidecar injects the rate-limit service alone, for pods whose
	// Envoy (Istio's, or the app's own) calls it on 127.0.0.1:8081.
	ModeSidecar Mode = "sidecar"
	// ModeEnvoy also injects an Envoy that listens on 10000, calls the
	// rate-limit service and forwards to the app on 127.0.0.1:8000.
	ModeEnvoy Mode = "envoy"
)

// Options are the injector's own settings; a template's annotations choose
// the rest.
type Options struct {
	// Image is the sidecar's image (default DefaultImage).
	Image string
	// EnvoyImage is Envoy's image in envoy mode (default DefaultEnvoyImage).
	EnvoyImage string
	// Mode applies to templates without a floodgate.io/mode annotation
	// (default ModeSidecar).
	Mode Mode
}

func (o Options) withDefaults() Options {
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.EnvoyImage == "" {
		o.EnvoyImage = DefaultEnvoyImage
	}
	if o.Mode == "" {
		o.Mode = ModeSidecar
	}
	return o
}

// ParseMode checks a mode's name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeSidecar, ModeEnvoy:
		return m, nil
	}
	return "", fmt.Errorf("%q: must be %s or %s", s, ModeSidecar, ModeEnvoy)
}

// Wanted reports whether annotations ask for injection. A value other than
// "true" or "false" is an error rather than a silent no: a typo such as
// "ture" would otherwise leave a workload unprotected without a word.
func Wanted(annotations map[string]string) (bool, error) {
	v, ok := annotations[AnnotationInject]
	if !ok {
		return false, nil
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("annotation %s: %q: must be \"true\" or \"false\"", AnnotationInject, v)
}

// request is what a template's annotations ask for, checked.
type request struct {
	mode        Mode
	limits      string
	envoyConfig string
	redisSecret string
}

func readRequest(annotations map[string]string, opts Options) (request, error) {
	r := request{
		mode:        opts.Mode,
		limits:      annotations[AnnotationConfig],
		envoyConfig: annotations[AnnotationEnvoyConfig],
		redisSecret: annotations[AnnotationRedisSecret],
	}
	var errs []error
	if v, ok := annotations[AnnotationMode]; ok {
		m, err := ParseMode(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationMode, err))
		}
		r.mode = m
	}
	if r.limits == "" {
		errs = append(errs, fmt.Errorf("annotation %s: required: the name of the ConfigMap that holds the limits", AnnotationConfig))
	}
	if r.mode == ModeEnvoy && r.envoyConfig == "" {
		errs = append(errs, fmt.Errorf("annotation %s: required in envoy mode: the name of the ConfigMap whose key envoy.yaml is Envoy's config", AnnotationEnvoyConfig))
	}
	return r, errors.Join(errs...)
}

// Mutate injects Floodgate into tmpl when its annotations ask for it, and
// reports whether it changed anything. It is idempotent: what is already
// there (a container or volume of the same name) is left as it is, so a
// second run changes nothing, and a template switched to envoy mode gets
// only the missing Envoy. It refuses a template whose containers already
// declare a port the injected containers need.
func Mutate(tmpl *corev1.PodTemplateSpec, opts Options) (bool, error) {
	want, err := Wanted(tmpl.Annotations)
	if err != nil || !want {
		return false, err
	}
	opts = opts.withDefaults()
	req, err := readRequest(tmpl.Annotations, opts)
	if err != nil {
		return false, err
	}
	spec := &tmpl.Spec
	var adds []corev1.Container
	if !hasContainer(spec, SidecarName) {
		adds = append(adds, sidecarContainer(opts.Image, req.redisSecret))
	}
	if req.mode == ModeEnvoy && !hasContainer(spec, EnvoyName) {
		adds = append(adds, envoyContainer(opts.EnvoyImage))
	}
	if err := checkPorts(spec, adds); err != nil {
		return false, err
	}
	changed := len(adds) > 0
	// Native sidecars (init containers that restart): they start before
	// the app containers and, in a Job, do not keep the pod running after
	// the app has finished.
	spec.InitContainers = append(spec.InitContainers, adds...)
	if !hasVolume(spec, LimitsVolume) {
		spec.Volumes = append(spec.Volumes, configMapVolume(LimitsVolume, req.limits))
		changed = true
	}
	if req.mode == ModeEnvoy && !hasVolume(spec, EnvoyConfigVolume) {
		spec.Volumes = append(spec.Volumes, configMapVolume(EnvoyConfigVolume, req.envoyConfig))
		changed = true
	}
	if changed || tmpl.Annotations[AnnotationStatus] != "injected" {
		tmpl.Annotations[AnnotationStatus] = "injected"
		changed = true
	}
	return changed, nil
}

func hasContainer(spec *corev1.PodSpec, name string) bool {
	f := func(c corev1.Container) bool { return c.Name == name }
	return slices.ContainsFunc(spec.InitContainers, f) || slices.ContainsFunc(spec.Containers, f)
}

func hasVolume(spec *corev1.PodSpec, name string) bool {
	return slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
}

// checkPorts refuses to add a container whose port another container of
// the pod already declares: in one network namespace the second to bind
// would crash-loop.
func checkPorts(spec *corev1.PodSpec, adds []corev1.Container) error {
	taken := map[int32]string{}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				taken[p.ContainerPort] = c.Name
			}
		}
	}
	var errs []error
	for _, c := range adds {
		for _, p := range c.Ports {
			if owner, ok := taken[p.ContainerPort]; ok {
				errs = append(errs, fmt.Errorf("container %q declares port %d, which the injected %q container needs", owner, p.ContainerPort, c.Name))
			}
		}
	}
	return errors.Join(errs...)
}

func configMapVolume(name, configMap string) corev1.Volume {
	return corev1.Volume{
		Name: name,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMap},
		}},
	}
}

// restricted is the securityContext of every injected container: what the
// Pod Security Standards' restricted profile asks for, and a read-only root
// filesystem (neither process writes to disk).
func restricted(uid int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(uid),
		RunAsGroup:               ptr.To(uid),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func resources(cpuReq, memReq, cpuLim, memLim string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpuReq),
			corev1.ResourceMemory: resource.MustParse(memReq),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpuLim),
			corev1.ResourceMemory: resource.MustParse(memLim),
		},
	}
}

func sidecarContainer(image, redisSecret string) corev1.Container {
	c := corev1.Container{
		Name:  SidecarName,
		Image: image,
		// The flags say what the image's defaults already are: the ports
		// below, and the probes, must agree with them, and a test checks
		// that they do by parsing these flags as the sidecar does.
		Args: []string{"serve", "--config=" + LimitsDir, fmt.Sprintf("--grpc-addr=:%d", GRPCPort), fmt.Sprintf("--http-addr=:%d", HTTPPort)},
		Ports: []corev1.ContainerPort{
			{Name: "floodgate-grpc", ContainerPort: GRPCPort, Protocol: corev1.ProtocolTCP},
			{Name: "floodgate-http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: resources("50m", "64Mi", "1", "256Mi"),
		VolumeMounts: []corev1.VolumeMount{
			{Name: LimitsVolume, MountPath: LimitsDir, ReadOnly: true},
		},
		// The gRPC health check proves the port Envoy calls answers; it
		// gates liveness and the app's start.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: GRPCPort}},
			PeriodSeconds:    1,
			FailureThreshold: 30,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(HTTPPort)}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		},
		// /readyz fails while no config is loaded or the backend is down.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(HTTPPort)}},
			PeriodSeconds:    5,
			FailureThreshold: 2,
		},
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		SecurityContext: restricted(sidecarUID),
	}
	if redisSecret != "" {
		c.EnvFrom = []corev1.EnvFromSource{{
			SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: redisSecret}},
		}}
	}
	return c
}

func envoyContainer(image string) corev1.Container {
	listener := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(EnvoyPort)}}
	return corev1.Container{
		Name:  EnvoyName,
		Image: image,
		// The binary directly, not the image's entrypoint script, which
		// wants to switch users and so to start as root. Hot restart needs
		// shared memory that a read-only root filesystem does not give.
		Command: []string{"envoy"},
		Args:    []string{"--config-path", EnvoyConfigDir + "/envoy.yaml", "--disable-hot-restart", "--log-level", "warn"},
		Ports: []corev1.ContainerPort{
			{Name: "envoy-http", ContainerPort: EnvoyPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: resources("100m", "64Mi", "2", "256Mi"),
		VolumeMounts: []corev1.VolumeMount{
			{Name: EnvoyConfigVolume, MountPath: EnvoyConfigDir, ReadOnly: true},
		},
		// Envoy's own /ready is on its admin port, which stays on loopback
		// where the kubelet cannot reach it: probe the listener instead.
		StartupProbe:    &corev1.Probe{ProbeHandler: listener, PeriodSeconds: 1, FailureThreshold: 30},
		LivenessProbe:   &corev1.Probe{ProbeHandler: listener, PeriodSeconds: 10, FailureThreshold: 3},
		ReadinessProbe:  &corev1.Probe{ProbeHandler: listener, PeriodSeconds: 5, FailureThreshold: 2},
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		SecurityContext: restricted(envoyUID),
	}
}

// describe names a workload for messages: "Deployment shop/web".
func describe(kind, namespace, name string) string {
	var b strings.Builder
	b.WriteString(kind)
	if namespace != "" || name != "" {
		b.WriteByte(' ')
		if namespace != "" {
			b.WriteString(namespace + "/")
		}
		b.WriteString(name)
	}
	return b.String()
}
