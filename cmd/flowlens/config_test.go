package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// Every variable is documented.
func TestConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	walkEnv(reflect.ValueOf(DefaultConfig()), func(name string, _ reflect.Value) {
		if v := envPrefix + name; !strings.Contains(string(doc), "`"+v+"`") {
			t.Errorf("%s is not in docs/configuration.md", v)
		}
	})
}

func TestEmptyListenerDisables(t *testing.T) {
	t.Setenv("FLOWLENS_SFLOW_LISTEN", "")
	t.Setenv("FLOWLENS_NETFLOW_LISTEN", "127.0.0.1:1,[::1]:2")
	cfg := DefaultConfig()
	fs := newFlagSet(&cfg)
	if err := loadConfig(fs, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.SFlowListen) != 0 || len(cfg.NetFlowListen) != 2 || len(cfg.IPFIXListen) != 1 {
		t.Fatalf("%+v", cfg)
	}
	got := cfg.udp().Listeners
	if len(got) != 3 || got[1].Addr != "[::1]:2" {
		t.Fatalf("%+v", got)
	}
}

// A parse error names the variable, also in nested configs whose fields
// share a Go name with a top-level one (BatchSize: BATCH_SIZE and
// LAND_BATCH_SIZE).
func TestEnvErrorNamesNestedVariable(t *testing.T) {
	for _, v := range []string{"FLOWLENS_LAND_BATCH_SIZE", "FLOWLENS_BATCH_SIZE", "FLOWLENS_KAFKA_LINGER", "FLOWLENS_CLICKHOUSE_DIAL_TIMEOUT"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, "not-a-number")
			cfg := DefaultConfig()
			err := loadConfig(newFlagSet(&cfg), nil, &cfg)
			if err == nil || !strings.HasPrefix(err.Error(), v+":") {
				t.Fatalf("error %v, want it to start with %s:", err, v)
			}
		})
	}
}
