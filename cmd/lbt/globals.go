package main

import (
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/hashicorp/go-hclog"

	"lbt/config"
)

// Globals are the flags every command accepts, and what the commands share:
// the output streams. Commands receive it as the second argument of Run.
type Globals struct {
	Config    string `short:"c" type:"path" env:"LBT_CONFIG" placeholder:"FILE" help:"Config file, YAML; LBT's config files are read unchanged (default: none, settings come from LBT_* variables and defaults)."`
	LogLevel  string `placeholder:"LEVEL" help:"Log level: trace, debug, info, warn or error (default: logLevel of the configuration, info)."`
	LogFormat string `placeholder:"FORMAT" help:"Log format: text or json (default: logFormat of the configuration, text)."`
	DSN       string `name:"dsn" placeholder:"DSN" help:"Source database, as a libpq connection string or URL; replaces all db.* settings of the config file, like $LBT_DSN (default: db.* of the configuration)."`

	stdout io.Writer
	stderr io.Writer
}

// Validate checks the global flags; kong calls it after parsing.
func (g *Globals) Validate() error {
	if g.LogLevel != "" && !slices.Contains([]string{"trace", "debug", "info", "warn", "error"}, g.LogLevel) {
		return fmt.Errorf("--log-level must be one of trace, debug, info, warn, error, not %q", g.LogLevel)
	}
	if g.LogFormat != "" && !slices.Contains([]string{"text", "json"}, g.LogFormat) {
		return fmt.Errorf("--log-format must be text or json, not %q", g.LogFormat)
	}
	return nil
}

// loadConfig returns the effective, validated configuration: defaults, the
// config file, the environment, then the flags. Its errors are usage
// errors.
func (g *Globals) loadConfig() (config.Config, error) {
	cfg := config.Default()
	if g.Config != "" {
		var err error
		if cfg, err = config.Load(g.Config); err != nil {
			return config.Config{}, usageError{err}
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return config.Config{}, usageError{err}
	}
	if g.DSN != "" {
		cfg.DB = config.DBConfig{DSN: g.DSN}
	}
	if g.LogLevel != "" {
		cfg.LogLevel = g.LogLevel
	}
	if g.LogFormat != "" {
		cfg.LogFormat = g.LogFormat
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, usageError{err}
	}
	return cfg, nil
}

// configure returns the effective configuration (loadConfig) and its
// logger (logger): what a command that logs starts with.
func (g *Globals) configure() (config.Config, hclog.Logger, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, g.logger(cfg), nil
}

// logger returns the logger for the configuration, which it passes down
// explicitly (lbt has no global logger), after logging the configuration's
// warnings.
func (g *Globals) logger(cfg config.Config) hclog.Logger {
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "lbt",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		Output:     g.stderr,
		JSONFormat: cfg.LogFormat == "json",
		Color:      hclog.ColorOff,
	})
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	return log
}
