package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAlertsAndWebhookSecret(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "smtp_password")
	if err := os.WriteFile(pwFile, []byte("smtp-pass-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, warns, err := Load(env(map[string]string{
		"FEEDD_NOTIFY_WEBHOOK":        "https://hooks.example.org/feedd",
		"FEEDD_NOTIFY_WEBHOOK_SECRET": "whsec-value",
		"FEEDD_SMTP_ADDR":             "smtp.example.org:587",
		"FEEDD_SMTP_USERNAME":         "alerts@example.org",
		"FEEDD_SMTP_PASSWORD_FILE":    pwFile,
		"FEEDD_SMTP_FROM":             "feedd <alerts@example.org>",
		"FEEDD_ALERT_EMAIL":           "owner@example.org, Second Owner <second@example.org>",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings %q", warns)
	}
	a := c.Alerts
	if c.NotifyWebhookSecret != "whsec-value" || a == nil || a.SMTPAddr != "smtp.example.org:587" || a.Username != "alerts@example.org" ||
		a.Password != "smtp-pass-from-file" || a.From != "feedd <alerts@example.org>" ||
		!slices.Equal(a.To, []string{"<owner@example.org>", `"Second Owner" <second@example.org>`}) {
		t.Fatalf("secret %q, alerts %+v", c.NotifyWebhookSecret, a)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	if out := buf.String(); strings.Contains(out, "smtp-pass-from-file") || strings.Contains(out, "whsec-value") ||
		!strings.Contains(out, "smtp_password=set") || !strings.Contains(out, "notify_webhook_secret=set") {
		t.Errorf("log dump: %s", out)
	}

	c, _, err = Load(env(nil))
	if err != nil || c.Alerts != nil || c.NotifyWebhookSecret != "" {
		t.Fatalf("defaults: alerts %+v, secret set %v, error %v", c.Alerts, c.NotifyWebhookSecret != "", err)
	}
}

func TestUnsignedWebhookIsWarnedAbout(t *testing.T) {
	_, warns, err := Load(env(map[string]string{"FEEDD_NOTIFY_WEBHOOK": "https://hooks.example.org/feedd"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "FEEDD_NOTIFY_WEBHOOK_SECRET") {
		t.Fatalf("warnings %q, want one naming FEEDD_NOTIFY_WEBHOOK_SECRET", warns)
	}
}

func TestBadAlertSettingsNameTheVariable(t *testing.T) {
	full := map[string]string{"FEEDD_SMTP_ADDR": "smtp.example.org:587", "FEEDD_ALERT_EMAIL": "owner@example.org",
		"FEEDD_SMTP_FROM": "alerts@example.org", "FEEDD_SMTP_USERNAME": "u", "FEEDD_SMTP_PASSWORD": "pw-secret-value"}
	for _, tt := range []struct {
		name string
		mod  map[string]string // "" deletes
		want string
	}{
		{"no addr", map[string]string{"FEEDD_SMTP_ADDR": ""}, "FEEDD_SMTP_ADDR: is needed by FEEDD_ALERT_EMAIL"},
		{"no recipients", map[string]string{"FEEDD_ALERT_EMAIL": ""}, "FEEDD_ALERT_EMAIL: is needed by FEEDD_SMTP_ADDR"},
		{"no from", map[string]string{"FEEDD_SMTP_FROM": ""}, "FEEDD_SMTP_FROM: is needed"},
		{"password without username", map[string]string{"FEEDD_SMTP_USERNAME": ""}, "FEEDD_SMTP_PASSWORD: is set without FEEDD_SMTP_USERNAME"},
		{"addr without port", map[string]string{"FEEDD_SMTP_ADDR": "smtp.example.org"}, `FEEDD_SMTP_ADDR: "smtp.example.org" is not host:port`},
		{"bad from", map[string]string{"FEEDD_SMTP_FROM": "alerts"}, `FEEDD_SMTP_FROM: "alerts" is not an e-mail address`},
		{"bad recipient", map[string]string{"FEEDD_ALERT_EMAIL": "owner@example.org, nobody"}, "FEEDD_ALERT_EMAIL:"},
		{"password alone", map[string]string{"FEEDD_SMTP_ADDR": "", "FEEDD_ALERT_EMAIL": "", "FEEDD_SMTP_FROM": "", "FEEDD_SMTP_USERNAME": ""},
			"FEEDD_SMTP_PASSWORD: is set without FEEDD_SMTP_ADDR and FEEDD_ALERT_EMAIL"},
		{"both password forms", map[string]string{"FEEDD_SMTP_PASSWORD_FILE": "/nonexistent"}, "FEEDD_SMTP_PASSWORD: both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range full {
				vars[k] = v
			}
			for k, v := range tt.mod {
				if v == "" {
					delete(vars, k)
				} else {
					vars[k] = v
				}
			}
			_, _, err := Load(env(vars))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to start with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw-secret-value") {
				t.Errorf("error holds the password: %v", err)
			}
		})
	}
}
