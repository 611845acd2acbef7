// The Kubernetes example, checked without a cluster: its Job is an Indexed
// Job whose --shards is its completions, whose paths are on its volumes,
// and whose command, run once per index with the volumes mapped to
// directories here, builds every image of an architecture exactly once.
package kubernetes_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type job struct {
	Kind string `yaml:"kind"`
	Spec struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    int    `yaml:"completions"`
		Parallelism    int    `yaml:"parallelism"`
		Template       struct {
			Spec struct {
				RestartPolicy string `yaml:"restartPolicy"`
				Containers    []struct {
					Image        string   `yaml:"image"`
					Command      []string `yaml:"command"`
					Args         []string `yaml:"args"`
					Env          []struct{ Name, Value string }
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name                  string    `yaml:"name"`
					ConfigMap             *struct{} `yaml:"configMap"`
					PersistentVolumeClaim *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
					EmptyDir *struct{} `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func loadJob(t *testing.T) (job, []string) {
	t.Helper()
	f, err := os.Open("indexed-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var claims []string
	var found *job
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		b, _ := yaml.Marshal(doc)
		switch doc["kind"] {
		case "PersistentVolumeClaim":
			claims = append(claims, doc["metadata"].(map[string]any)["name"].(string))
		case "Job":
			var j job
			if err := yaml.Unmarshal(b, &j); err != nil {
				t.Fatal(err)
			}
			found = &j
		}
	}
	if found == nil {
		t.Fatal("indexed-job.yaml has no Job")
	}
	return *found, claims
}

func TestIndexedJob(t *testing.T) {
	j, claims := loadJob(t)
	s := j.Spec
	if s.CompletionMode != "Indexed" || s.Completions < 1 || s.Parallelism < 1 || s.Template.Spec.RestartPolicy != "Never" {
		t.Fatalf("not an Indexed Job of >= 1 completions that never restarts in place: %+v", s)
	}
	if len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(s.Template.Spec.Containers))
	}
	c := s.Template.Spec.Containers[0]
	args := append(append([]string{}, c.Command...), c.Args...)
	if len(args) < 2 || args[0] != "multiple" {
		t.Fatalf("the container runs %q, want gen-vm-image multiple (the image's entry point) ...", args)
	}
	flag := func(name string) string {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
		}
		t.Fatalf("the container's arguments have no %s: %q", name, args)
		return ""
	}
	if flag("--shard") != "auto" || flag("--shards") != strconv.Itoa(s.Completions) {
		t.Errorf("--shard %s --shards %s with %d completions: --shards must be the completions", flag("--shard"), flag("--shards"), s.Completions)
	}
	// Every mount is a volume; the outputs and the cache are on the shared
	// claim, the architecture on the config map.
	volumes := map[string]string{}
	for _, v := range s.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			volumes[v.Name] = "configMap"
		case v.PersistentVolumeClaim != nil:
			volumes[v.Name] = "claim"
			found := false
			for _, c := range claims {
				found = found || c == v.PersistentVolumeClaim.ClaimName
			}
			if !found {
				t.Errorf("volume %s names claim %s, which the file does not define", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.EmptyDir != nil:
			volumes[v.Name] = "emptyDir"
		}
	}
	mounts := map[string]string{} // mount path -> kind
	for _, m := range c.VolumeMounts {
		kind, ok := volumes[m.Name]
		if !ok {
			t.Errorf("mount %s names no volume", m.Name)
		}
		mounts[m.MountPath] = kind
	}
	on := func(path string) string {
		for mp, kind := range mounts {
			if strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
				return kind
			}
		}
		return ""
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if on(flag("--output-directory")) != "claim" || on(env["GVI_CACHE_DIR"]) != "claim" {
		t.Errorf("outputs %s and cache %s must be on the shared claim", flag("--output-directory"), env["GVI_CACHE_DIR"])
	}
	if on(args[1]) != "configMap" {
		t.Errorf("the architecture %s is not on the config map", args[1])
	}
	runPods(t, args, env, mounts, s.Completions)
}

// runPods runs the container's command once per index, as the Job's pods
// would, with every mount path mapped to a directory of the test.
func runPods(t *testing.T, args []string, env map[string]string, mounts map[string]string, completions int) {
	root := t.TempDir()
	bin := filepath.Join(root, "gen-vm-image")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/gen-vm-image")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	mapPath := func(p string) string {
		for mp := range mounts {
			if p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/") {
				return filepath.Join(root, "volumes", p)
			}
		}
		return p
	}
	for mp := range mounts {
		os.MkdirAll(mapPath(mp), 0o755)
	}
	var arch strings.Builder
	arch.WriteString("owner: kubernetes-test\nimages:\n")
	const n = 12
	for i := 0; i < n; i++ {
		fmt.Fprintf(&arch, "  vm%02d: {name: vm%02d, size: 1M}\n", i, i)
	}
	if err := os.WriteFile(mapPath(args[1]), []byte(arch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := ""
	for i, a := range args {
		if i > 0 && args[i-1] == "--output-directory" {
			out = mapPath(a)
		}
	}
	built := map[string]int{}
	for index := 0; index < completions; index++ {
		before, _ := os.ReadDir(out)
		var mapped []string
		for _, a := range args {
			mapped = append(mapped, mapPath(a))
		}
		cmd := exec.Command(bin, mapped...)
		cmd.Env = append(os.Environ(), "JOB_COMPLETION_INDEX="+strconv.Itoa(index), "SLURM_ARRAY_TASK_ID=")
		for k, v := range env {
			if strings.HasPrefix(v, "/") {
				v = mapPath(v)
			}
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("pod %d: %v\n%s%s", index, err, stdout.String(), stderr.String())
		}
		if strings.Contains(stdout.String(), "kept") {
			t.Errorf("pod %d found images of its shard built already: %s", index, stdout.String())
		}
		seen := map[string]bool{}
		for _, e := range before {
			seen[e.Name()] = true
		}
		after, _ := os.ReadDir(out)
		t.Logf("pod %d built %d images", index, len(after)-len(before))
		for _, e := range after {
			if strings.HasPrefix(e.Name(), "vm") && !seen[e.Name()] {
				built[e.Name()]++
			}
		}
	}
	if len(built) != n {
		t.Errorf("%d of %d images built by the %d pods: %v", len(built), n, completions, built)
	}
}
