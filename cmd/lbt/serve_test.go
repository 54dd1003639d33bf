package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// A second daemon on the same host finds the default metrics port taken:
// one line naming metricsAddr and the fix, as a configuration error.
func TestServeHTTP_TakenAddressNamesTheKey(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	err = serveHTTP(context.Background(), hclog.NewNullLogger(), "metrics", addr, http.NotFoundHandler())
	var usage usageError
	if !errors.As(err, &usage) {
		t.Fatalf("serveHTTP on a taken address: %v, want a usage error", err)
	}
	want := "metricsAddr " + addr + " is taken (another lbt backup on this host?): set metricsAddr to a free host:port"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
}
