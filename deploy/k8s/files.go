// Package k8s is the kustomize base and overlays that run cosell on Kubernetes (base/, overlays/), and
// embeds the one file of the base the binaries ship too: the default mapping (base/mapping.yaml).
//
// The file lives here because kustomize only reads files inside a kustomization's root (its default load
// restrictor), so base/kustomization.yaml's configMapGenerator can name base/mapping.yaml but nothing
// outside it; Go's embed can take it from here. The ConfigMap the base generates and the mapping built into
// every binary are therefore the same bytes, with no copy to keep in step. This is a module of its own,
// without dependencies, like deploy/salesforce, so the services do not depend on the deploy module.
package k8s

import "embed"

// DefaultMappingFile is the default mapping's path in Files and in the repository (under deploy/k8s).
const DefaultMappingFile = "base/mapping.yaml"

// Files holds base/mapping.yaml.
//
//go:embed base/mapping.yaml
var Files embed.FS
