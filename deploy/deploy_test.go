package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Label keys the manifests rely on.
const (
	labelName      = "app.kubernetes.io/name"
	labelComponent = "app.kubernetes.io/component"
	labelPartOf    = "app.kubernetes.io/part-of"
	exampleAnno    = "leadflow.dev/example"
)

// backends are the gRPC services; each owns a schema and has a migrate Job.
var backends = []string{"identity", "ingestion", "scoring", "lifecycle", "handoff"}

// servers are every Leadflow Deployment.
var servers = append(slices.Clone(backends), "gateway")

// prodSecrets are the Secrets an operator creates for prod; nothing else may
// be referenced outside the dev overlay.
var prodSecrets = map[string][]string{
	"leadflow-database":       backends,
	"leadflow-internal-token": {"token"},
}

// target is one kustomization to render and check.
type target struct {
	name string
	// dir is relative to deploy/. With components set, the test renders a
	// throwaway kustomization of dir plus those components.
	dir        string
	components []string
	// dev allows Secret data (marked as example) and untagged local images.
	dev  bool
	prod bool
}

var targets = []target{
	{name: "dev", dir: "overlays/dev", dev: true},
	{name: "prod", dir: "overlays/prod", prod: true},
	{name: "base+components", dir: "base", components: []string{"components/network-policy", "components/otel-collector"}},
}

func TestManifests(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, tg)
			checks := []struct {
				name string
				fn   func(*testing.T, *rendered, target)
			}{
				{"pod security and resources", checkPods},
				{"GOMEMLIMIT", checkMemLimit},
				{"probes", checkProbes},
				{"services", checkServices},
				{"secrets", checkSecrets},
				{"credentials", checkCredentials},
				{"config maps", checkConfigMaps},
				{"env", checkEnv},
				{"migrate jobs", checkMigrateJobs},
				{"images", checkImages},
				{"availability", checkAvailability},
				{"telemetry", checkTelemetry},
			}
			for _, c := range checks {
				t.Run(c.name, func(t *testing.T) { c.fn(t, r, tg) })
			}
		})
	}
}

// workload is anything that runs pods.
type workload struct {
	kind   string
	name   string
	labels map[string]string // the pod template's
	pod    *corev1.PodSpec
}

func (w workload) String() string { return w.kind + "/" + w.name }

// service returns the Leadflow service a workload belongs to, or "".
func (w workload) service() string {
	if w.labels[labelPartOf] != "leadflow" || !slices.Contains(servers, w.labels[labelName]) {
		return ""
	}
	return w.labels[labelName]
}

// rendered is the decoded output of one kustomization.
type rendered struct {
	objects     []runtime.Object
	workloads   []workload
	deployments map[string]*appsv1.Deployment
	jobs        []*batchv1.Job
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
	configMaps  map[string]*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
}

// strict decodes like the API server with fieldValidation=Strict: unknown
// and duplicate fields are errors.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

func render(t *testing.T, tg target) *rendered {
	t.Helper()
	dir, err := filepath.Abs(tg.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.components) > 0 {
		dir = composeKustomization(t, dir, tg.components)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", tg.dir, err)
	}
	r := &rendered{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		secrets:     map[string]*corev1.Secret{},
		configMaps:  map[string]*corev1.ConfigMap{},
	}
	for _, res := range resMap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
		obj, _, err := strict.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s does not decode strictly: %v", res.CurId(), err)
			continue
		}
		r.add(obj)
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(r.deployments) == 0 {
		t.Fatalf("%s renders no Deployments", tg.dir)
	}
	return r
}

// composeKustomization writes a kustomization of base plus components to a
// temporary directory and returns it.
func composeKustomization(t *testing.T, base string, components []string) string {
	t.Helper()
	dir := t.TempDir()
	// Kustomize refuses absolute paths: refer to everything relative to dir.
	rel := func(path string) string {
		abs, err := filepath.Abs(path)
		if err == nil {
			path, err = filepath.Rel(dir, abs)
		}
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	var b strings.Builder
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	fmt.Fprintf(&b, "  - %s\ncomponents:\n", rel(base))
	for _, c := range components {
		fmt.Fprintf(&b, "  - %s\n", rel(c))
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (r *rendered) add(obj runtime.Object) {
	r.objects = append(r.objects, obj)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r.deployments[o.Name] = o
		r.workloads = append(r.workloads, workload{"Deployment", o.Name, o.Spec.Template.Labels, &o.Spec.Template.Spec})
	case *appsv1.StatefulSet:
		r.workloads = append(r.workloads, workload{"StatefulSet", o.Name, o.Spec.Template.Labels, &o.Spec.Template.Spec})
	case *appsv1.DaemonSet:
		r.workloads = append(r.workloads, workload{"DaemonSet", o.Name, o.Spec.Template.Labels, &o.Spec.Template.Spec})
	case *batchv1.Job:
		r.jobs = append(r.jobs, o)
		r.workloads = append(r.workloads, workload{"Job", o.Name, o.Spec.Template.Labels, &o.Spec.Template.Spec})
	case *batchv1.CronJob:
		r.workloads = append(r.workloads, workload{"CronJob", o.Name, o.Spec.JobTemplate.Spec.Template.Labels, &o.Spec.JobTemplate.Spec.Template.Spec})
	case *corev1.Pod:
		r.workloads = append(r.workloads, workload{"Pod", o.Name, o.Labels, &o.Spec})
	case *corev1.Service:
		r.services[o.Name] = o
	case *corev1.Secret:
		r.secrets[o.Name] = o
	case *corev1.ConfigMap:
		r.configMaps[o.Name] = o
	case *policyv1.PodDisruptionBudget:
		r.pdbs = append(r.pdbs, o)
	case *autoscalingv2.HorizontalPodAutoscaler:
		r.hpas = append(r.hpas, o)
	}
}

// containers returns a pod's init and regular containers.
func containers(pod *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range pod.InitContainers {
		cs = append(cs, &pod.InitContainers[i])
	}
	for i := range pod.Containers {
		cs = append(cs, &pod.Containers[i])
	}
	return cs
}

func checkPods(t *testing.T, r *rendered, _ target) {
	for _, w := range r.workloads {
		psc := w.pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if w.pod.AutomountServiceAccountToken == nil || *w.pod.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false (nothing calls the Kubernetes API)", w)
		}
		for _, c := range containers(w.pod) {
			where := fmt.Sprintf("%s container %s", w, c.Name)
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[name]; !ok {
					t.Errorf("%s: no resources.requests.%s", where, name)
				}
				if _, ok := c.Resources.Limits[name]; !ok {
					t.Errorf("%s: no resources.limits.%s", where, name)
				}
			}
			for _, p := range c.Ports {
				// Decoding does not validate; names are referenced by Services,
				// probes and network policies, so an invalid one breaks all three.
				if p.Name != "" && (len(p.Name) > 15 || !ianaSvcNameRE.MatchString(p.Name)) {
					t.Errorf("%s: port name %q is not an IANA service name (<= 15 lowercase letters, digits, '-')", where, p.Name)
				}
			}
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			uid := sc.RunAsUser
			if uid == nil {
				uid = psc.RunAsUser
			}
			if uid != nil && *uid == 0 {
				t.Errorf("%s: runs as UID 0", where)
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none", where)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
			}
		}
	}
}

// ianaSvcNameRE is the shape Kubernetes requires of port names.
var ianaSvcNameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func isTrue(b *bool) bool { return b != nil && *b }

// checkMemLimit: every Go container of Leadflow sets GOMEMLIMIT to 80–95% of
// its memory limit, or to the limit itself through resourceFieldRef.
func checkMemLimit(t *testing.T, r *rendered, _ target) {
	for _, w := range r.workloads {
		if w.labels[labelPartOf] != "leadflow" {
			continue
		}
		for _, c := range containers(w.pod) {
			where := fmt.Sprintf("%s container %s", w, c.Name)
			limit, ok := c.Resources.Limits[corev1.ResourceMemory]
			if !ok {
				continue // reported by checkPods
			}
			env := findEnv(c, "GOMEMLIMIT")
			switch {
			case env == nil:
				t.Errorf("%s: no GOMEMLIMIT", where)
			case env.ValueFrom != nil:
				ref := env.ValueFrom.ResourceFieldRef
				if ref == nil || ref.Resource != "limits.memory" {
					t.Errorf("%s: GOMEMLIMIT must come from resourceFieldRef limits.memory or be a literal", where)
				}
			default:
				n, err := parseGoMemLimit(env.Value)
				if err != nil {
					t.Errorf("%s: GOMEMLIMIT: %v", where, err)
					continue
				}
				ratio := float64(n) / float64(limit.Value())
				if ratio < 0.80 || ratio > 0.95 {
					t.Errorf("%s: GOMEMLIMIT %s is %.0f%% of the %s limit, want 80-95%%", where, env.Value, ratio*100, limit.String())
				}
			}
		}
	}
}

var goMemLimitRE = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseGoMemLimit parses GOMEMLIMIT's syntax (runtime/debug.SetMemoryLimit).
func parseGoMemLimit(s string) (int64, error) {
	m := goMemLimitRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a byte count like 230MiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, nil
}

func findEnv(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// checkProbes: gRPC servers use native grpc probes on their gRPC port; the
// gateway is ready on /healthz but live on something that does not depend on
// the backends.
func checkProbes(t *testing.T, r *rendered, _ target) {
	for _, name := range servers {
		d, ok := r.deployments[name]
		if !ok {
			t.Errorf("no Deployment %s", name)
			continue
		}
		for i := range d.Spec.Template.Spec.Containers {
			c := &d.Spec.Template.Spec.Containers[i]
			where := fmt.Sprintf("Deployment/%s container %s", name, c.Name)
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: needs readiness and liveness probes", where)
				continue
			}
			if grpcPort := containerPort(c, "grpc"); grpcPort != nil {
				for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
					if p.GRPC == nil || p.GRPC.Port != grpcPort.ContainerPort {
						t.Errorf("%s: %s probe must be grpc on port %d", where, kind, grpcPort.ContainerPort)
					}
				}
				continue
			}
			if containerPort(c, "http") == nil {
				t.Errorf("%s: has neither a grpc nor an http port", where)
				continue
			}
			if g := c.ReadinessProbe.HTTPGet; g == nil || g.Path != "/healthz" || g.Port != intstr.FromString("http") {
				t.Errorf("%s: readiness probe must be GET /healthz on port http", where)
			}
			if g := c.LivenessProbe.HTTPGet; g != nil && g.Path == "/healthz" {
				t.Errorf("%s: liveness must not use /healthz: one backend down would restart every gateway", where)
			}
		}
	}
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// checkServices: ports are named for their protocol, and each Service
// selects exactly one workload that has the named target port.
func checkServices(t *testing.T, r *rendered, _ target) {
	for _, name := range servers {
		if _, ok := r.services[name]; !ok {
			t.Errorf("no Service %s", name)
		}
	}
	for _, s := range r.services {
		var selected []workload
		for _, w := range r.workloads {
			if w.kind != "Job" && len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.labels)) {
				selected = append(selected, w)
			}
		}
		if len(selected) != 1 {
			t.Errorf("Service/%s selects %d workloads %v, want 1", s.Name, len(selected), selected)
			continue
		}
		for _, p := range s.Spec.Ports {
			if !portNameRE.MatchString(p.Name) {
				t.Errorf("Service/%s port %q: name it grpc or http (or grpc-*/http-*)", s.Name, p.Name)
			}
			if p.TargetPort.Type != intstr.String {
				t.Errorf("Service/%s port %s: targetPort should name a container port", s.Name, p.Name)
				continue
			}
			found := false
			for _, c := range selected[0].pod.Containers {
				found = found || containerPort(&c, p.TargetPort.StrVal) != nil
			}
			if !found {
				t.Errorf("Service/%s port %s: %s has no port named %s", s.Name, p.Name, selected[0], p.TargetPort.StrVal)
			}
		}
	}
}

var portNameRE = regexp.MustCompile(`^(grpc|http)(-[a-z0-9]+)*$|^postgres$`)

// checkSecrets: only the dev overlay carries Secret data, and every one of
// its Secrets says it is an example.
func checkSecrets(t *testing.T, r *rendered, tg target) {
	for _, s := range r.secrets {
		if !tg.dev {
			if len(s.Data) > 0 || len(s.StringData) > 0 {
				t.Errorf("Secret/%s carries data outside the dev overlay: create it out of band", s.Name)
			}
			continue
		}
		if _, ok := s.Annotations[exampleAnno]; !ok {
			t.Errorf("Secret/%s in the dev overlay lacks the %s annotation", s.Name, exampleAnno)
		}
	}
}

// checkCredentials: credentials only ever come from Secrets; outside dev they
// come from the documented Secrets, which must therefore keep their names.
func checkCredentials(t *testing.T, r *rendered, tg target) {
	for _, w := range r.workloads {
		for _, c := range containers(w.pod) {
			for _, e := range c.Env {
				where := fmt.Sprintf("%s container %s env %s", w, c.Name, e.Name)
				credential := strings.HasSuffix(e.Name, "DATABASE_URL") || strings.HasSuffix(e.Name, "INTERNAL_TOKEN") ||
					strings.HasSuffix(e.Name, "PASSWORD")
				if credential && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s: a credential must come from a secretKeyRef", where)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					checkSecretRef(t, r, tg, where, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
		}
		for _, v := range w.pod.Volumes {
			if v.Secret != nil {
				for _, item := range v.Secret.Items {
					checkSecretRef(t, r, tg, fmt.Sprintf("%s volume %s", w, v.Name), v.Secret.SecretName, item.Key)
				}
			}
		}
	}
}

func checkSecretRef(t *testing.T, r *rendered, tg target, where, name, key string) {
	t.Helper()
	if tg.dev {
		s, ok := r.secrets[name]
		if !ok {
			t.Errorf("%s: Secret %s is not in the dev overlay", where, name)
		} else if _, ok := s.Data[key]; !ok {
			t.Errorf("%s: Secret %s has no key %s", where, name, key)
		}
		return
	}
	keys, ok := prodSecrets[name]
	if !ok {
		t.Errorf("%s: Secret %s is not one of the documented Secrets", where, name)
	} else if !slices.Contains(keys, key) {
		t.Errorf("%s: Secret %s has no documented key %s", where, name, key)
	}
}

// checkConfigMaps: every ConfigMap reference resolves in the output (so
// generated names were rewritten everywhere).
func checkConfigMaps(t *testing.T, r *rendered, _ target) {
	for _, w := range r.workloads {
		for _, c := range containers(w.pod) {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.ConfigMapKeyRef
				cm, ok := r.configMaps[ref.Name]
				if !ok {
					t.Errorf("%s env %s: no ConfigMap %s", w, e.Name, ref.Name)
				} else if _, ok := cm.Data[ref.Key]; !ok {
					t.Errorf("%s env %s: ConfigMap %s has no key %s", w, e.Name, ref.Name, ref.Key)
				}
			}
		}
		for _, v := range w.pod.Volumes {
			if v.ConfigMap != nil {
				if _, ok := r.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s volume %s: no ConfigMap %s", w, v.Name, v.ConfigMap.Name)
				}
			}
		}
	}
}

// checkEnv: a Leadflow container reads only its own <SERVICE>_ variables
// (plus the Go runtime's and OpenTelemetry's), listen addresses match the
// container ports, and peer addresses match the peers' Services.
func checkEnv(t *testing.T, r *rendered, _ target) {
	for _, w := range r.workloads {
		svc := w.service()
		if svc == "" {
			continue
		}
		prefix := strings.ToUpper(svc) + "_"
		for _, c := range containers(w.pod) {
			where := fmt.Sprintf("%s container %s", w, c.Name)
			for _, e := range c.Env {
				switch {
				case strings.HasPrefix(e.Name, prefix), e.Name == "GOMEMLIMIT", e.Name == "GOMAXPROCS",
					strings.HasPrefix(e.Name, "OTEL_"), strings.HasPrefix(e.Name, "POD_"):
				default:
					t.Errorf("%s: env %s is not %s-prefixed: the service would never read it", where, e.Name, prefix)
				}
			}
			for _, listen := range []string{"GRPC_ADDR", "HTTP_ADDR"} {
				e := findEnv(c, prefix+listen)
				if e == nil {
					continue
				}
				if p := containerPort(c, strings.ToLower(strings.TrimSuffix(listen, "_ADDR"))); p == nil || e.Value != ":"+strconv.Itoa(int(p.ContainerPort)) {
					t.Errorf("%s: %s=%q does not match its container port", where, e.Name, e.Value)
				}
			}
			for _, peer := range backends {
				e := findEnv(c, prefix+strings.ToUpper(peer)+"_ADDR")
				if e == nil {
					if w.kind == "Deployment" {
						t.Errorf("%s: no %s%s_ADDR (the default is localhost)", where, prefix, strings.ToUpper(peer))
					}
					continue
				}
				s, ok := r.services[peer]
				if !ok || len(s.Spec.Ports) == 0 || e.Value != fmt.Sprintf("%s:%d", peer, s.Spec.Ports[0].Port) {
					t.Errorf("%s: %s=%q does not match Service %s", where, e.Name, e.Value, peer)
				}
			}
		}
	}
}

// checkMigrateJobs: every service with a schema has a Job that runs
// `<binary> migrate` from the same image as its Deployment.
func checkMigrateJobs(t *testing.T, r *rendered, _ target) {
	for _, svc := range backends {
		var job *batchv1.Job
		for _, j := range r.jobs {
			if j.Spec.Template.Labels[labelName] == svc && j.Spec.Template.Labels[labelComponent] == "migrate" {
				job = j
			}
		}
		if job == nil {
			t.Errorf("no migrate Job for %s", svc)
			continue
		}
		cs := job.Spec.Template.Spec.Containers
		if len(cs) != 1 || !slices.Equal(cs[0].Args, []string{"migrate"}) || len(cs[0].Command) > 0 {
			t.Errorf("Job/%s: want one container with args [migrate]", job.Name)
			continue
		}
		if d, ok := r.deployments[svc]; ok && d.Spec.Template.Spec.Containers[0].Image != cs[0].Image {
			t.Errorf("Job/%s runs image %s, Deployment/%s runs %s", job.Name, cs[0].Image, svc, d.Spec.Template.Spec.Containers[0].Image)
		}
		if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("Job/%s: restartPolicy Never keeps failed pods for their logs", job.Name)
		}
		if job.Spec.Parallelism != nil && *job.Spec.Parallelism > 1 {
			t.Errorf("Job/%s: parallelism > 1", job.Name)
		}
	}
}

// checkImages: overlays pin a tag or digest; only the base may leave it to
// them.
func checkImages(t *testing.T, r *rendered, tg target) {
	if tg.dir == "base" {
		return
	}
	for _, w := range r.workloads {
		for _, c := range containers(w.pod) {
			ref := c.Image
			if i := strings.LastIndex(ref, "/"); i >= 0 {
				ref = ref[i+1:]
			}
			if !strings.Contains(ref, ":") && !strings.Contains(ref, "@") || strings.HasSuffix(ref, ":latest") {
				t.Errorf("%s container %s: image %q needs a pinned tag or digest", w, c.Name, c.Image)
			}
		}
	}
}

// checkAvailability: in prod every server survives a drain (two replicas or
// an HPA with at least two, and a PDB), and autoscaled Deployments leave
// replicas to the autoscaler.
func checkAvailability(t *testing.T, r *rendered, tg target) {
	if !tg.prod {
		return
	}
	for _, name := range servers {
		d, ok := r.deployments[name]
		if !ok {
			continue // reported by checkProbes
		}
		var hpa *autoscalingv2.HorizontalPodAutoscaler
		for _, h := range r.hpas {
			if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == name {
				hpa = h
			}
		}
		switch {
		case hpa != nil && d.Spec.Replicas != nil:
			t.Errorf("Deployment/%s sets replicas but HPA/%s owns them: every apply would reset the scale", name, hpa.Name)
		case hpa != nil && (hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2):
			t.Errorf("HPA/%s: minReplicas < 2", hpa.Name)
		case hpa == nil && (d.Spec.Replicas == nil || *d.Spec.Replicas < 2):
			t.Errorf("Deployment/%s: fewer than 2 replicas in prod", name)
		}
		covered := false
		for _, p := range r.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil {
				t.Errorf("PDB/%s: %v", p.Name, err)
				continue
			}
			covered = covered || sel.Matches(labels.Set(d.Spec.Template.Labels))
		}
		if !covered {
			t.Errorf("Deployment/%s: no PodDisruptionBudget", name)
		}
	}
}

// checkTelemetry: with the collector component on, every server exports to
// the collector's OTLP/gRPC port.
func checkTelemetry(t *testing.T, r *rendered, _ target) {
	s, ok := r.services["otel-collector"]
	if !ok {
		return
	}
	var want string
	for _, p := range s.Spec.Ports {
		if p.Name == "grpc-otlp" {
			want = fmt.Sprintf("http://%s:%d", s.Name, p.Port)
		}
	}
	if want == "" {
		t.Fatalf("Service/otel-collector has no grpc-otlp port")
	}
	for _, name := range servers {
		d, ok := r.deployments[name]
		if !ok {
			continue
		}
		e := findEnv(&d.Spec.Template.Spec.Containers[0], "OTEL_EXPORTER_OTLP_ENDPOINT")
		if e == nil || e.Value != want {
			t.Errorf("Deployment/%s: OTEL_EXPORTER_OTLP_ENDPOINT should be %s", name, want)
		}
	}
}

// TestStrictDecodeCatchesTypos makes sure the strict decoder the manifests
// are checked with really rejects what the API server would.
func TestStrictDecodeCatchesTypos(t *testing.T) {
	tests := []struct {
		name, yaml string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n"},
		{"unknown kind", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := strict.Decode([]byte(tt.yaml), nil, nil); err == nil {
				t.Errorf("decoded without error")
			}
		})
	}
}

// TestParseGoMemLimit pins the parser the GOMEMLIMIT check relies on.
func TestParseGoMemLimit(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "230MiB", want: 230 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "1048576", want: 1 << 20},
		{in: "512B", want: 512},
		{in: "230Mi", err: true},
		{in: "230M", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseGoMemLimit(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseGoMemLimit(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
	// The manifests' limits are Kubernetes quantities; make sure the ratio
	// check compares like with like.
	if q := resource.MustParse("256Mi"); q.Value() != 256<<20 {
		t.Fatalf("256Mi = %d bytes", q.Value())
	}
}
