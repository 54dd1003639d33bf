// Package config holds lbt's settings: their defaults, the YAML config file,
// LBT_* environment overrides, validation, and the PostgreSQL connection
// settings derived from them.
//
// The file format is the one of LBT (mkabilov/logical_backup), read
// unchanged: every key LBT's code read is accepted with LBT's meaning, and the
// names LBT used at different times (stagingDir, messagesPerDelta,
// prometheusPort, log.level, ...) map onto one canonical setting. lbt's own
// additions use the same camelCase style.
//
// Settings are layered, later layers winning:
//
//	Default()        built-in defaults, defined in one place
//	Load(path)       the config file
//	ApplyEnv(getenv) LBT_* environment variables
//	flags            applied by the command line last
//
// Unknown keys, values of the wrong type and bad durations are errors that
// name the key and the line: a typo in a backup tool's config must not
// silently fall back to a default.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"lbt/crypt"
)

// Config is the complete lbt configuration. The yaml tags are the keys of the
// config file; see Load for the names LBT used that are accepted as well.
type Config struct {
	// ArchiveDir is the directory holding the archive. Required. With
	// ArchiveURL set it is the local working directory: the active
	// segment, the live catalog, LOCK, and the files not yet uploaded.
	ArchiveDir string `yaml:"archiveDir"`
	// ArchiveURL, s3://bucket/prefix, keeps the archive's immutable files
	// (sealed segments, basebackups, catalog snapshots) in an
	// S3-compatible object store; empty keeps them in ArchiveDir only.
	// Credentials come from the AWS environment variables or the shared
	// credentials file, never from here.
	ArchiveURL string `yaml:"archiveUrl"`
	// S3Endpoint is the object store's URL (http://host:port, or
	// https://...); empty means AWS S3.
	S3Endpoint string `yaml:"s3Endpoint"`
	// S3Region is the bucket's region; empty takes AWS_REGION, else
	// us-east-1.
	S3Region string `yaml:"s3Region"`
	// S3ForcePathStyle addresses the bucket in the path
	// (endpoint/bucket/key) rather than as a host name, as most
	// S3-compatible servers need.
	S3ForcePathStyle bool `yaml:"s3ForcePathStyle"`
	// UploadInterval is the longest a change waits on the backup host
	// before its segment is sealed and uploaded: the most a lost backup
	// host can lose when ConfirmAfterUpload is off.
	UploadInterval time.Duration `yaml:"uploadInterval"`
	// ConfirmAfterUpload confirms a position to PostgreSQL only once what
	// it covers is in the bucket, so that a lost backup host loses
	// nothing; the slot keeps up to UploadInterval more WAL.
	ConfirmAfterUpload bool `yaml:"confirmAfterUpload"`
	// KeepLocalCopies keeps the local copy of every sealed segment and
	// basebackup file after upload. Off by default: the bucket is the
	// archive, and archiveDir then holds only what the bucket lacks (and
	// the live catalog), so that its disk need not fit the whole history;
	// on, archiveDir holds all of it too and restores on the backup host
	// read no byte from the bucket.
	KeepLocalCopies bool `yaml:"keepLocalCopies"`
	// TempDir holds files being written before they are moved into the
	// archive (LBT: tempDir, later stagingDir), and the row keys of a
	// large transaction until it commits. Empty, or equal to
	// ArchiveDir (LBT's "no staging"), means <archiveDir>/tmp; use
	// EffectiveTempDir. It should be on the archive's filesystem so that
	// the final rename is atomic.
	TempDir string `yaml:"tempDir"`

	// SlotName is the logical replication slot. It is pasted unquoted into
	// replication commands, hence the strict syntax checked by Validate.
	SlotName string `yaml:"slotname"`
	// Publication names the publication whose tables are backed up.
	Publication string `yaml:"publication"`
	// TrackNewTables backs up tables that join the publication while lbt
	// runs, and allows starting with an empty publication (LBT's meaning
	// and default: false).
	TrackNewTables bool `yaml:"trackNewTables"`
	// InitialBasebackup takes a fresh basebackup of every table at
	// startup, starting a new epoch of each table's history.
	InitialBasebackup bool `yaml:"initialBasebackup"`

	// DeltasPerFile is the most changes one delta segment holds; a full
	// segment is closed and a new one started, even inside a transaction
	// (LBT: deltasPerFile, later messagesPerDelta).
	DeltasPerFile int `yaml:"deltasPerFile"`
	// BackupThreshold is the number of delta segments written for a table
	// since its last basebackup after which a new basebackup of that table
	// is requested. With DeltasPerFile it bounds how many changes a
	// restore has to replay on top of a basebackup.
	BackupThreshold int `yaml:"backupThreshold"`
	// ConcurrentBasebackups is how many basebackups may run at once; each
	// holds one PostgreSQL connection.
	ConcurrentBasebackups int `yaml:"concurrentBasebackups"`
	// BasebackupJobs is how many connections copy one table's chunks at
	// once, all under the basebackup's one snapshot; each basebackup of
	// ConcurrentBasebackups has its own.
	BasebackupJobs int `yaml:"basebackupJobs"`
	// BasebackupChunkSize is about how much of a table's storage one
	// basebackup file (chunk) holds.
	BasebackupChunkSize ByteSize `yaml:"basebackupChunkSize"`
	// SyntheticBasebackupSize: a table due for a basebackup by
	// backupThreshold whose newest basebackup holds at least this much COPY
	// text gets one built from the archive (its newest basebackup and the
	// changes after it), reading nothing from the source. 0 is off.
	SyntheticBasebackupSize ByteSize `yaml:"syntheticBasebackupSize"`
	// ForceBasebackupAfterInactivityInterval requests a basebackup of a
	// table that changed since its last basebackup but has seen no change
	// for this long. Truncated to whole minutes, as LBT did; 0 is off.
	ForceBasebackupAfterInactivityInterval time.Duration `yaml:"forceBasebackupAfterInactivityInterval"`
	// BasebackupSchedule takes a basebackup of every table at this interval
	// (for example 24h); 0 is off.
	BasebackupSchedule time.Duration `yaml:"basebackupSchedule"`
	// ArchiverTimeout closes a table's open, non-empty delta segment after
	// this long without a new change, so that quiet tables do not keep a
	// segment open indefinitely (LBT's meaning); 0 is off.
	ArchiverTimeout time.Duration `yaml:"archiverTimeout"`
	// Fsync makes every write durable before the position is confirmed to
	// the server. Turning it off risks losing confirmed changes on a crash
	// of the machine (LBT defaulted to false; lbt does not).
	Fsync bool `yaml:"fsync"`

	// Retention is how long history is kept: purge removes what only
	// serves restores to points older than this. 0 keeps everything.
	Retention time.Duration `yaml:"retention"`
	// RetentionBasebackups is how many basebackups per table purge keeps
	// at least, whatever their age. 0 means no limit by count.
	RetentionBasebackups int `yaml:"retentionBasebackups"`

	// StatusWarnLag and StatusCritLag: lbt status reports WARNING, or
	// CRITICAL, when the slot keeps this much WAL on the source. 0 is off.
	StatusWarnLag ByteSize `yaml:"statusWarnLag"`
	StatusCritLag ByteSize `yaml:"statusCritLag"`
	// StatusWarnAge and StatusCritAge: lbt status reports WARNING, or
	// CRITICAL, when the archive last advanced (a transaction archived, or
	// the position confirmed on an idle source) this long ago. 0 is off.
	StatusWarnAge time.Duration `yaml:"statusWarnAge"`
	StatusCritAge time.Duration `yaml:"statusCritAge"`

	// RestoreMemory is about how much memory a restore gives the changes
	// it reduces; past it they spill to sorted files in TempDir. With the
	// default, lbt restore stays under 512 MiB of resident memory however
	// many rows the changes touched. 0 keeps everything in memory.
	RestoreMemory ByteSize `yaml:"restoreMemory"`

	// StatusInterval is how often the confirmed position is reported to the
	// server when nothing else prompts it. It must stay well below the
	// server's wal_sender_timeout (60s by default).
	StatusInterval time.Duration `yaml:"statusInterval"`
	// FlushInterval is how long received changes may wait in memory before
	// they are written, synced and cataloged.
	FlushInterval time.Duration `yaml:"flushInterval"`

	// MetricsAddr is the host:port of the Prometheus metrics endpoint;
	// empty disables it. LBT's prometheusPort N maps to 127.0.0.1:N.
	MetricsAddr string `yaml:"metricsAddr"`
	// DebugAddr is the host:port of the net/http/pprof endpoint; empty
	// (the default) disables it. LBT served pprof on :8080 on all
	// interfaces, unconditionally; lbt serves it only when asked.
	DebugAddr string `yaml:"debugAddr"`

	// LogLevel is one of trace, debug, info, warn, error.
	LogLevel string `yaml:"logLevel"`
	// LogFormat is text or json.
	LogFormat string `yaml:"logFormat"`

	// EncryptRecipients are age public keys (age1..., from lbt keygen):
	// every file lbt writes to the archive is encrypted to all of them. An
	// archive is encrypted from its creation on, or never. The daemon needs
	// only these; after a change, new files go to the new list.
	EncryptRecipients []string `yaml:"encryptRecipients"`
	// DecryptIdentityFile holds age secret keys, one a line (lbt keygen
	// writes one): needed to read an encrypted archive's contents
	// (restore, inspect, diff, undo, verify --data, rebuild). After a key
	// rotation it holds the old keys and the new.
	DecryptIdentityFile string `yaml:"decryptIdentityFile"`

	// DB holds the source database connection settings.
	DB DBConfig `yaml:"db"`

	// warnings collects notes about accepted but ineffective LBT keys.
	warnings []string
}

// DBConfig holds the connection settings of the source database. Every field
// is optional: what is left unset comes from the PG* environment variables,
// ~/.pgpass and libpq's defaults, as with psql. See Config.ConnConfig.
type DBConfig struct {
	// DSN is a libpq connection string, keyword/value ("host=/tmp
	// dbname=app") or URL ("postgres://user@host/app"). Host, Port, User,
	// Database and Password, when set, override the DSN's values.
	DSN      string `yaml:"dsn"`
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	User     string `yaml:"user"`
	Database string `yaml:"database"`
	Password string `yaml:"password"`
	// RuntimeParams are sent to the server at connection start, as session
	// defaults (LBT: db.runtimeparams).
	RuntimeParams map[string]string `yaml:"runtimeParams"`
}

// Default returns the built-in defaults. It is the only place defaults are
// defined.
func Default() Config {
	return Config{
		SlotName:              "lbt",
		Publication:           "lbt",
		TrackNewTables:        false,
		InitialBasebackup:     false,
		DeltasPerFile:         100000,
		BackupThreshold:       100,
		ConcurrentBasebackups: 1,
		BasebackupJobs:        DefaultBasebackupJobs(),
		BasebackupChunkSize:   1 << 30,
		// Below it a fresh basebackup takes a few minutes at the source's
		// 100-200 MB/s and re-reads the truth (definition, sequences);
		// above it the source read and its held snapshot grow to hours.
		SyntheticBasebackupSize: 10 << 30,
		Fsync:                   true,
		UploadInterval:          time.Minute,
		ConfirmAfterUpload:      true,
		StatusInterval:          10 * time.Second,
		StatusWarnLag:           1 << 30,
		StatusCritLag:           8 << 30,
		StatusWarnAge:           15 * time.Minute,
		StatusCritAge:           time.Hour,
		RestoreMemory:           DefaultRestoreMemory,
		FlushInterval:           time.Second,
		MetricsAddr:             "127.0.0.1:9187",
		LogLevel:                "info",
		LogFormat:               "text",
	}
}

// DefaultBasebackupJobs is basebackupJobs' default: the number of cores,
// at most 4 (past that the source's disk, not its CPU, is the limit, and
// each job is a connection).
func DefaultBasebackupJobs() int {
	return min(runtime.NumCPU(), 4)
}

// DefaultRestoreMemory is restoreMemory's default: with the Go runtime's
// own memory, the reading of the changes and the COPY around it, restore
// stays under 512 MiB resident.
const DefaultRestoreMemory = 256 << 20

// Load reads the config file at path over Default(). Errors name the file,
// the line and the key:
//
//	config lbt.yaml:7: unknown key "fsynk" (did you mean "fsync"?)
//
// Besides the keys of Config, Load accepts what LBT read: stagingDir and
// StagingDir for tempDir, messagesPerDelta for deltasPerFile, prometheusPort
// N for metricsAddr 127.0.0.1:N, log.level and log.development for logLevel
// and logFormat, db.runtimeparams for db.runtimeParams, and YAML 1.1
// booleans (yes, no, on, off). The keys sendStatusOnCommit, tables,
// periodBetweenBackups, log.location, db.usefallbacktls,
// db.prefersimpleprotocol and db.loglevel are accepted and have no effect;
// Warnings lists them. A setting given twice, under any of its names, is an
// error. A key without a value keeps the default.
func Load(path string) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := decodeYAML(&c, path, data); err != nil {
		return Config{}, err
	}
	c.normalize()
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && c.holdsPassword() {
		c.warnings = append(c.warnings, fmt.Sprintf("config %s holds a password and is readable by others than its owner (mode %04o): chmod 600 %s",
			path, fi.Mode().Perm(), path))
	}
	return c, nil
}

// holdsPassword reports whether the settings carry a password, as db.password
// or inside db.dsn.
func (c Config) holdsPassword() bool {
	return c.DB.Password != "" || redactDSN(c.DB.DSN) != c.DB.DSN
}

// Warnings returns notes about keys that were accepted for LBT compatibility
// but have no effect in lbt. The command line logs them at startup.
func (c Config) Warnings() []string {
	return append([]string(nil), c.warnings...)
}

// Keys returns the encryption keys the settings name: the recipients
// parsed, the identity file read.
func (c Config) Keys() (*crypt.Keys, error) {
	return crypt.New(c.EncryptRecipients, c.DecryptIdentityFile)
}

// EffectiveTempDir returns the directory for files being written: TempDir,
// or <archiveDir>/tmp when TempDir is empty or is the archive itself.
func (c Config) EffectiveTempDir() string {
	if c.TempDir == "" || (c.ArchiveDir != "" && filepath.Clean(c.TempDir) == filepath.Clean(c.ArchiveDir)) {
		if c.ArchiveDir == "" {
			return ""
		}
		return DefaultTempDir(c.ArchiveDir)
	}
	return c.TempDir
}

// S3Location is where ArchiveURL says the archive's objects are.
type S3Location struct {
	Bucket string
	Prefix string // without slashes at either end; "" for the bucket's root
}

// S3Location parses ArchiveURL, s3://bucket or s3://bucket/prefix.
func (c Config) S3Location() (S3Location, error) {
	u, err := url.Parse(c.ArchiveURL)
	bad := func(why string) (S3Location, error) {
		return S3Location{}, fmt.Errorf("archiveUrl %q %s: write s3://bucket/prefix", redactURL(c.ArchiveURL), why)
	}
	switch {
	case err != nil:
		return bad("is not a URL")
	case u.Scheme != "s3":
		return bad("is not an s3:// URL")
	case u.User != nil:
		return bad("holds credentials, which come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the shared credentials file")
	case u.Host == "" || u.Port() != "":
		return bad("names no bucket")
	case u.RawQuery != "" || u.Fragment != "":
		return bad("has a query or fragment")
	}
	prefix := strings.Trim(u.Path, "/")
	if strings.Contains(prefix, "//") || slices.Contains(strings.Split(prefix, "/"), "..") || slices.Contains(strings.Split(prefix, "/"), ".") {
		return bad("has an empty, . or .. element in its prefix")
	}
	return S3Location{Bucket: u.Host, Prefix: prefix}, nil
}

// redactURL drops the user information of a URL that does not parse
// otherwise, for an error that names it.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 && !strings.Contains(rest[:at], "/") {
		return scheme + "://****@" + rest[at+1:]
	}
	return s
}

// DefaultTempDir is where files being written go when tempDir is not set:
// tmp/ inside the archive (docs/FORMAT.md), on the same file system, so
// that a finished file is renamed into place rather than copied.
func DefaultTempDir(archiveDir string) string {
	return filepath.Join(archiveDir, "tmp")
}

// normalize applies the adjustments LBT made after reading its file.
func (c *Config) normalize() {
	// Forcing basebackups after sub-minute inactivity makes no sense
	// (LBT's reasoning, kept for compatibility).
	c.ForceBasebackupAfterInactivityInterval = c.ForceBasebackupAfterInactivityInterval.Truncate(time.Minute)
}

// slotNameRE is stricter than PostgreSQL's rule for slot names only in
// length: the name is pasted unquoted into replication commands.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Validate reports every setting that is out of range or inconsistent, in
// one error. It does not touch the file system or the network.
func (c Config) Validate() error {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}

	if c.ArchiveDir == "" {
		add("archiveDir is required (set it in the config file or with LBT_ARCHIVE_DIR)")
	}
	if !slotNameRE.MatchString(c.SlotName) {
		add("slotname %q must be 1-63 characters of a-z, 0-9 and _ (it is used unquoted in replication commands)", c.SlotName)
	}
	switch {
	case c.Publication == "":
		add("publication must not be empty")
	case len(c.Publication) > 63:
		add("publication %q is longer than 63 bytes", c.Publication)
	case strings.ContainsRune(c.Publication, 0):
		add("publication must not contain a NUL byte")
	}
	for _, v := range []struct {
		key string
		n   int
	}{
		{"deltasPerFile", c.DeltasPerFile},
		{"backupThreshold", c.BackupThreshold},
		{"concurrentBasebackups", c.ConcurrentBasebackups},
		{"basebackupJobs", c.BasebackupJobs},
	} {
		if v.n <= 0 {
			add("%s must be greater than 0, not %d", v.key, v.n)
		}
	}
	if c.RetentionBasebackups < 0 {
		add("retentionBasebackups must not be negative, not %d", c.RetentionBasebackups)
	}
	for _, v := range []struct {
		key      string
		d        time.Duration
		positive bool
	}{
		{"forceBasebackupAfterInactivityInterval", c.ForceBasebackupAfterInactivityInterval, false},
		{"basebackupSchedule", c.BasebackupSchedule, false},
		{"archiverTimeout", c.ArchiverTimeout, false},
		{"retention", c.Retention, false},
		{"statusInterval", c.StatusInterval, true},
		{"statusWarnAge", c.StatusWarnAge, false},
		{"statusCritAge", c.StatusCritAge, false},
		{"flushInterval", c.FlushInterval, true},
		{"uploadInterval", c.UploadInterval, true},
	} {
		switch {
		case v.d < 0:
			add("%s must not be negative, not %s", v.key, formatDuration(v.d))
		case v.positive && v.d == 0:
			add("%s must be greater than 0", v.key)
		}
	}
	if c.RestoreMemory < 0 {
		add("restoreMemory must not be negative")
	}
	for i, r := range c.EncryptRecipients {
		if _, err := crypt.New([]string{r}, ""); err != nil {
			add("encryptRecipients[%d] is not an age public key (age1...: lbt keygen prints one)", i)
		}
	}
	if c.BasebackupChunkSize <= 0 {
		add("basebackupChunkSize must be greater than 0")
	}
	if c.SyntheticBasebackupSize < 0 {
		add("syntheticBasebackupSize must not be negative")
	}
	if c.StatusWarnLag < 0 || c.StatusCritLag < 0 {
		add("statusWarnLag and statusCritLag must not be negative")
	}
	if c.StatusWarnLag > 0 && c.StatusCritLag > 0 && c.StatusWarnLag > c.StatusCritLag {
		add("statusWarnLag %s is above statusCritLag %s", c.StatusWarnLag, c.StatusCritLag)
	}
	if c.StatusWarnAge > 0 && c.StatusCritAge > 0 && c.StatusWarnAge > c.StatusCritAge {
		add("statusWarnAge %s is above statusCritAge %s", formatDuration(c.StatusWarnAge), formatDuration(c.StatusCritAge))
	}
	if c.BasebackupSchedule > 0 && c.BasebackupSchedule < time.Minute {
		add("basebackupSchedule %s is shorter than a minute", formatDuration(c.BasebackupSchedule))
	}
	for _, v := range []struct{ key, addr string }{
		{"metricsAddr", c.MetricsAddr},
		{"debugAddr", c.DebugAddr},
	} {
		if v.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v.addr); err != nil {
			add("%s %q must be host:port, for example 127.0.0.1:9187", v.key, v.addr)
		}
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		add("logLevel %q must be one of %s", c.LogLevel, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, c.LogFormat) {
		add("logFormat %q must be one of %s", c.LogFormat, strings.Join(logFormats, ", "))
	}
	if c.ArchiveURL != "" {
		if _, err := c.S3Location(); err != nil {
			add("%s", err)
		}
	} else if c.S3Endpoint != "" || c.S3Region != "" || c.S3ForcePathStyle {
		add("s3Endpoint, s3Region and s3ForcePathStyle need archiveUrl (s3://bucket/prefix)")
	}
	if c.DB.Port < 0 || c.DB.Port > 65535 {
		add("db.port %d is not a TCP port", c.DB.Port)
	}

	if len(problems) > 0 {
		return errors.New("invalid configuration: " + strings.Join(problems, "; "))
	}
	return nil
}

// Changed lists the keys whose values differ between c and o, in
// declaration order (the values are not given: some are secrets).
func (c Config) Changed(o Config) []string {
	a, b := settings(reflect.ValueOf(&c).Elem(), ""), settings(reflect.ValueOf(&o).Elem(), "")
	var out []string
	for i := range a {
		if !reflect.DeepEqual(a[i].value.Interface(), b[i].value.Interface()) {
			out = append(out, a[i].key)
		}
	}
	if !reflect.DeepEqual(c.DB.RuntimeParams, o.DB.RuntimeParams) {
		out = append(out, "db.runtimeParams")
	}
	return out
}

// Assign sets the settings named by keys (as Changed names them) to their
// values in from.
func (c *Config) Assign(from Config, keys ...string) {
	dst, src := settings(reflect.ValueOf(c).Elem(), ""), settings(reflect.ValueOf(&from).Elem(), "")
	for i := range dst {
		if slices.Contains(keys, dst[i].key) {
			dst[i].value.Set(src[i].value)
		}
	}
}
