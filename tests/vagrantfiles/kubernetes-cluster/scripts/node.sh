#!/bin/sh
echo node
