#!/bin/sh
echo master
