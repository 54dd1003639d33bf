package config_test

import (
	"strings"
	"testing"
	"time"

	"lbt/config"
)

func TestLoad_ObjectStorageKeys(t *testing.T) {
	path := writeConfig(t, "archiveDir: /work\narchiveUrl: s3://backups/pg/main\ns3Endpoint: http://127.0.0.1:7070\ns3Region: eu-west-1\ns3ForcePathStyle: true\nuploadInterval: 30s\nconfirmAfterUpload: false\n")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ArchiveURL != "s3://backups/pg/main" || c.S3Endpoint != "http://127.0.0.1:7070" || c.S3Region != "eu-west-1" || !c.S3ForcePathStyle || c.UploadInterval != 30*time.Second || c.ConfirmAfterUpload {
		t.Errorf("loaded %+v", c)
	}
	loc, err := c.S3Location()
	if err != nil || loc != (config.S3Location{Bucket: "backups", Prefix: "pg/main"}) {
		t.Errorf("S3Location = %+v, %v", loc, err)
	}

	d := config.Default()
	if d.UploadInterval != time.Minute || !d.ConfirmAfterUpload || d.ArchiveURL != "" {
		t.Errorf("defaults: uploadInterval %s, confirmAfterUpload %v, archiveUrl %q", d.UploadInterval, d.ConfirmAfterUpload, d.ArchiveURL)
	}
}

func TestApplyEnv_ObjectStorageKeys(t *testing.T) {
	env := map[string]string{
		"LBT_ARCHIVE_URL":          "s3://b/p",
		"LBT_S3_ENDPOINT":          "http://127.0.0.1:1",
		"LBT_S3_REGION":            "r",
		"LBT_S3_FORCE_PATH_STYLE":  "true",
		"LBT_UPLOAD_INTERVAL":      "5s",
		"LBT_CONFIRM_AFTER_UPLOAD": "false",
	}
	c := config.Default()
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.ArchiveURL != "s3://b/p" || c.S3Endpoint != "http://127.0.0.1:1" || c.S3Region != "r" || !c.S3ForcePathStyle || c.UploadInterval != 5*time.Second || c.ConfirmAfterUpload {
		t.Errorf("from the environment: %+v", c)
	}
}

func TestS3Location(t *testing.T) {
	tests := []struct {
		url  string
		want config.S3Location
		err  string
	}{
		{url: "s3://bucket", want: config.S3Location{Bucket: "bucket"}},
		{url: "s3://bucket/", want: config.S3Location{Bucket: "bucket"}},
		{url: "s3://bucket/a/b/", want: config.S3Location{Bucket: "bucket", Prefix: "a/b"}},
		{url: "/var/lib/lbt", err: "is not an s3:// URL"},
		{url: "gs://bucket/x", err: "is not an s3:// URL"},
		{url: "s3:///x", err: "names no bucket"},
		{url: "s3://b:9000/x", err: "names no bucket"},
		{url: "s3://b/x?versioning=1", err: "has a query or fragment"},
		{url: "s3://b/a//c", err: "empty, . or .."},
		{url: "s3://b/a/../c", err: "empty, . or .."},
		{url: "s3://AKIAXXXX:hunter2@b/x", err: "holds credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c := config.Default()
			c.ArchiveDir = "/work"
			c.ArchiveURL = tt.url
			got, err := c.S3Location()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "s3://bucket/prefix") {
					t.Fatalf("err = %v, want %q and the fix", err, tt.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the secret: %v", err)
				}
				if verr := c.Validate(); verr == nil || !strings.Contains(verr.Error(), tt.err) {
					t.Errorf("Validate: %v", verr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("S3Location = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestValidate_ObjectStorage(t *testing.T) {
	tests := []struct {
		name   string
		change func(*config.Config)
		err    string
	}{
		{"s3 keys without archiveUrl", func(c *config.Config) { c.S3Endpoint = "http://x:1" }, "need archiveUrl"},
		{"zero uploadInterval", func(c *config.Config) { c.ArchiveURL = "s3://b"; c.UploadInterval = 0 }, "uploadInterval must be greater than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.ArchiveDir = "/work"
			tt.change(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Validate = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestRedacted_ArchiveURLCredentials(t *testing.T) {
	c := config.Default()
	c.ArchiveDir = "/work"
	c.ArchiveURL = "s3://AKIAXXXX:hunter2@b/x"
	out := c.Redacted()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "AKIAXXXX") || !strings.Contains(out, "archiveUrl: s3://****@b/x") {
		t.Errorf("Redacted:\n%s", out)
	}
}
