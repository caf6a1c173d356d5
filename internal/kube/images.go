// Package kube reads Kubernetes manifests (multi-document YAML, such as
// rendered Helm output) for the container images they run.
package kube

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"gopkg.in/yaml.v3"
)

// containerLists are the pod-spec fields that hold containers.
var containerLists = []string{"containers", "initContainers", "ephemeralContainers"}

// Images returns, in order of first appearance and without duplicates, the
// image of every container, init container and ephemeral container of
// every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob
// (any object with a pod spec) in the YAML stream.
func Images(r io.Reader) ([]string, error) {
	dec := yaml.NewDecoder(r)
	var out []string
	for i := 0; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("YAML document %d: %w", i+1, err)
		}
		walk(&doc, func(img string) {
			if !slices.Contains(out, img) {
				out = append(out, img)
			}
		})
	}
}

// walk finds "image" values inside container lists anywhere in the tree,
// which covers pod specs, pod templates and CronJob job templates alike.
func walk(n *yaml.Node, found func(string)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walk(c, found)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if slices.Contains(containerLists, key.Value) && val.Kind == yaml.SequenceNode {
				for _, c := range val.Content {
					c = resolve(c)
					if c.Kind != yaml.MappingNode {
						continue
					}
					for j := 0; j+1 < len(c.Content); j += 2 {
						img := resolve(c.Content[j+1])
						if c.Content[j].Value == "image" && img.Kind == yaml.ScalarNode && img.Value != "" {
							found(img.Value)
						}
					}
				}
			}
			walk(val, found)
		}
	}
}

// resolve follows an alias (*name) to its anchored node, so that a
// container or image defined once and reused is still found.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}
