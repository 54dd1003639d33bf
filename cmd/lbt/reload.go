package main

import (
	"context"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"lbt/basebackup"
	"lbt/config"
)

// reloadable are the settings a running lbt backup applies on SIGHUP: the
// log level, and what the basebackup scheduler decides (triggers,
// concurrency, retention). lbt status reads its thresholds itself at each
// run. Everything else is read once at start.
var reloadable = []string{"logLevel", "concurrentBasebackups", "backupThreshold", "forceBasebackupAfterInactivityInterval",
	"basebackupSchedule", "retention", "retentionBasebackups", "statusWarnLag", "statusCritLag", "statusWarnAge", "statusCritAge"}

// reloadOnHUP reads the configuration again at every SIGHUP until ctx
// ends, applies what can change safely while the daemon runs, and names in
// a warning what changed but needs a restart. An invalid configuration is
// logged and changes nothing.
func reloadOnHUP(ctx context.Context, g *Globals, log hclog.Logger, running config.Config, policies chan<- basebackup.Policy) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := g.loadConfig()
		if err != nil {
			log.Error("SIGHUP: the configuration is not valid; nothing was reloaded", "error", err)
			continue
		}
		changed := running.Changed(cfg)
		var applied, ignored []string
		for _, key := range changed {
			if slices.Contains(reloadable, key) {
				applied = append(applied, key)
			} else {
				ignored = append(ignored, key)
			}
		}
		log.SetLevel(hclog.LevelFromString(cfg.LogLevel))
		select {
		case policies <- schedulerPolicy(cfg):
		case <-ctx.Done():
			return
		}
		if len(ignored) > 0 {
			log.Warn("SIGHUP: these settings changed but apply only after a restart", "keys", strings.Join(ignored, ", "))
		}
		log.Info("SIGHUP: configuration reloaded", "applied", strings.Join(applied, ", "))
		// What was not applied stays as it runs, so that the next reload
		// names it again.
		running.Assign(cfg, applied...)
	}
}

// schedulerPolicy is the scheduler's part of the configuration.
func schedulerPolicy(cfg config.Config) basebackup.Policy {
	return basebackup.Policy{Concurrent: cfg.ConcurrentBasebackups, Threshold: cfg.BackupThreshold,
		InactivityInterval: cfg.ForceBasebackupAfterInactivityInterval, Schedule: cfg.BasebackupSchedule,
		Retention: cfg.Retention, RetentionBasebackups: cfg.RetentionBasebackups}
}
