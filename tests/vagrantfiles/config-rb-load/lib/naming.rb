def machine_name(n)
  format("%s-%03d", $prefix, n)
end

def machine_ip(n, base: "10.0.3")
  "#{base}.#{10 + n}"
end
