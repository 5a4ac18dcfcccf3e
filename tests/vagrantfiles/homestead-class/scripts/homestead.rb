class Homestead
  def self.configure(config, settings)
    config.vm.box = settings['box'] ||= 'laravel/homestead'
  end
end
