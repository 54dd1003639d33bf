package main

import (
	"context"
	"fmt"
	"runtime"
)

type versionCmd struct{}

func (cmd *versionCmd) Run(ctx context.Context, g *Globals) error {
	_, err := fmt.Fprintf(g.stdout, "lbt %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
