//go:build !race

package ratelimitsvc_test

const raceEnabled = false
