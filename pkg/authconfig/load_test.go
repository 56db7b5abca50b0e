package authconfig

import (
	"testing"
)

func TestLoadFull(t *testing.T) {
	cfg, err := Load("testdata/valid/full/auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Log(cfg.Summary())
}
