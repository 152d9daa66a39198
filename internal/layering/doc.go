// Package layering holds the house rules of kiln's import graph as a test: which layer may import
// which (DESIGN.md, "Dependency direction"), and that shared code never asks which provider it is.
// It has no code of its own.
package layering
