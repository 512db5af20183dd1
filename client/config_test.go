package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "abs", "ca.pem")
	tests := []struct {
		name    string
		yaml    string
		want    Config
		wantErr []string // substrings the error must contain
	}{
		{
			name: "relative paths resolve against the file's folder",
			yaml: "address: node.xaa.example:7443\ncert: certs/op.pem\nkey: certs/op.key\nca: " + abs + "\n",
			want: Config{
				Address:  "node.xaa.example:7443",
				CertFile: filepath.Join(dir, "certs", "op.pem"),
				KeyFile:  filepath.Join(dir, "certs", "op.key"),
				CAFile:   abs,
			},
		},
		{
			name:    "unknown field is named with its line",
			yaml:    "address: a:1\ncert: c\nkey: k\nca: ca\nadress: b:2\n",
			wantErr: []string{`line 5: unknown field "adress"`, "known fields: address, cert, key, ca"},
		},
		{
			name:    "every missing field is named",
			yaml:    "address: a:1\n",
			wantErr: []string{"cert is missing", "key is missing", "ca is missing"},
		},
		{
			name:    "empty file",
			yaml:    "",
			wantErr: []string{"address is missing", "cert is missing", "key is missing", "ca is missing"},
		},
		{
			name:    "address without port",
			yaml:    "address: node.example\ncert: c\nkey: k\nca: ca\n",
			wantErr: []string{`address: "node.example" is not host:port`},
		},
		{
			name:    "address with bad port",
			yaml:    "address: node.example:99999\ncert: c\nkey: k\nca: ca\n",
			wantErr: []string{`port "99999" is not a number from 1 to 65535`},
		},
		{
			name:    "not YAML",
			yaml:    "address: [a\n",
			wantErr: []string{"not valid YAML"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "pocctl"+string(rune('a'+i))+".yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadConfig(path)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("LoadConfig = %+v, want an error", got)
				}
				for _, s := range append(tt.wantErr, path) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if got.Address != tt.want.Address || got.CertFile != tt.want.CertFile || got.KeyFile != tt.want.KeyFile || got.CAFile != tt.want.CAFile {
				t.Errorf("LoadConfig = %+v, want %+v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.yaml")
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadConfig(missing) = %v, want an error naming %s", err, path)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"files", Config{Address: "h:1", CertFile: "c", KeyFile: "k", CAFile: "ca"}, ""},
		{"no address", Config{CertFile: "c", KeyFile: "k", CAFile: "ca"}, "address is missing"},
		{"no key", Config{Address: "h:1", CertFile: "c", CAFile: "ca"}, "key is missing"},
		{"no ca", Config{Address: "h:1", CertFile: "c", KeyFile: "k"}, "ca is missing"},
		{"bad address", Config{Address: "h", CertFile: "c", KeyFile: "k", CAFile: "ca"}, `"h" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
