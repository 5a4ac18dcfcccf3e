$machines = 2
$prefix ||= "lab"
