#!/bin/sh
echo drain
