module github.com/sealpost/sealpost

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/rivo/uniseg v0.4.7
)
