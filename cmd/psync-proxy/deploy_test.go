package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// proxyContainer is what a Kubernetes manifest gives the psync-proxy container.
type proxyContainer struct {
	command, args []string
	env           []string
}

// k8sProxyContainers reads the psync-proxy containers of a manifest (block-style lists, as the
// examples write them) and its ConfigMaps' files, by key.
func k8sProxyContainers(text string) ([]proxyContainer, map[string]string) {
	lines := strings.Split(text, "\n")
	var out []proxyContainer
	files := map[string]string{}
	var cur *proxyContainer
	for i := 0; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		switch {
		case strings.HasPrefix(t, "- name: "):
			if strings.TrimPrefix(t, "- name: ") == "psync-proxy" && strings.Contains(strings.Join(lines[i:min(i+3, len(lines))], "\n"), "image:") {
				out = append(out, proxyContainer{})
				cur = &out[len(out)-1]
			} else if strings.Contains(strings.Join(lines[i:min(i+3, len(lines))], "\n"), "image:") {
				cur = nil
			} else if cur != nil && strings.HasPrefix(t, "- name: PSYNC_PROXY_") {
				cur.env = append(cur.env, strings.TrimPrefix(t, "- name: "))
			}
		case cur != nil && strings.HasPrefix(t, "command: "):
			cur.command = inlineList(strings.TrimPrefix(t, "command: "))
		case cur != nil && t == "args:":
			for i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "- ") &&
				len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent {
				i++
				cur.args = append(cur.args, unquote(strings.TrimPrefix(strings.TrimSpace(lines[i]), "- ")))
			}
		case strings.HasSuffix(t, ": |") && strings.HasSuffix(strings.TrimSuffix(t, ": |"), ".conf"):
			var b strings.Builder
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
				i++
				b.WriteString(strings.TrimPrefix(lines[i], strings.Repeat(" ", indent+2)) + "\n")
			}
			files[strings.TrimSuffix(t, ": |")] = b.String()
		}
	}
	return out, files
}

func inlineList(s string) []string {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "["), "]")
	var out []string
	for _, e := range strings.Split(s, ",") {
		out = append(out, unquote(strings.TrimSpace(e)))
	}
	return out
}

func unquote(s string) string { return strings.Trim(s, `"'`) }

// The Kubernetes examples use only flags, directives and environment variables psync-proxy
// has: each proxy container's command line (with its ConfigMap's file in place) parses and
// makes a valid configuration, with no directive ignored.
func TestKubernetesExamples(t *testing.T) {
	t.Setenv("PSYNC_PROXY_USERS", "")
	paths, _ := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if len(paths) < 2 {
		t.Fatalf("examples: %v", paths)
	}
	known := map[string]bool{"PSYNC_PROXY_MASTERAUTH": true, "PSYNC_PROXY_REQUIREPASS": true, "PSYNC_PROXY_USERS": true}
	seen := 0
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		containers, files := k8sProxyContainers(string(b))
		if len(containers) == 0 {
			t.Errorf("%s: no psync-proxy container", path)
		}
		for _, c := range containers {
			seen++
			if len(c.command) != 1 || c.command[0] != "/usr/local/bin/psync-proxy" || len(c.args) == 0 {
				t.Errorf("%s: command %q args %q", path, c.command, c.args)
				continue
			}
			for _, e := range c.env {
				if !known[e] {
					t.Errorf("%s: unknown environment variable %s", path, e)
				}
			}
			args := append([]string(nil), c.args...)
			if file, _ := confFileArg(args); file != "" {
				text, found := files[filepath.Base(file)]
				if !found {
					t.Errorf("%s: %s is not in a ConfigMap of the file", path, file)
					continue
				}
				tmp := filepath.Join(t.TempDir(), filepath.Base(file))
				if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				args[0] = tmp
			}
			o, err := parse(args, io.Discard)
			if err != nil {
				t.Errorf("%s: %q: %v", path, c.args, err)
				continue
			}
			if _, err := o.config(); err != nil {
				t.Errorf("%s: %q: %v", path, c.args, err)
			}
			if len(o.warnings) > 0 {
				t.Errorf("%s: warnings: %q", path, o.warnings)
			}
		}
	}
	if seen < 2 {
		t.Errorf("%d proxy containers in the examples, want the sidecar and the fan-out tier", seen)
	}
}
