#!/bin/sh
echo "$GREETING from $VERSION"
