//! Personas: the kinds of driver the simulator makes, each built to earn particular labels.

/// A kind of driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Persona {
    /// Home to work and back on weekdays.
    Commuter,
    /// Commutes, and drives to another city most weekends.
    LongDistance,
    /// Commutes, braking and accelerating hard, speeding on the ring road.
    Aggressive,
    /// A night-shift worker: drives to work at 22:30, home at 5 h.
    NightDriver,
    /// Ride-hailing: short trips all day.
    RideHailing,
    /// Commutes, and spends afternoons at the mall and the golf club; a luxury car.
    PremiumShopper,
    /// Drives a lot but services at a competitor: last seen in our workshop 20 months ago.
    Lost,
    /// Bought a premium car six weeks ago.
    NewCarOwner,
    /// Drives an EV and charges at a hub.
    EvOwner,
}

impl Persona {
    /// Every persona.
    pub const ALL: [Persona; 9] = [
        Persona::Commuter,
        Persona::LongDistance,
        Persona::Aggressive,
        Persona::NightDriver,
        Persona::RideHailing,
        Persona::PremiumShopper,
        Persona::Lost,
        Persona::NewCarOwner,
        Persona::EvOwner,
    ];

    /// A short name, used in ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Persona::Commuter => "commuter",
            Persona::LongDistance => "long-distance",
            Persona::Aggressive => "aggressive",
            Persona::NightDriver => "night",
            Persona::RideHailing => "ride-hailing",
            Persona::PremiumShopper => "premium",
            Persona::Lost => "lost",
            Persona::NewCarOwner => "new-car",
            Persona::EvOwner => "ev",
        }
    }

    /// The strategy this persona is built to get first, and a label it must carry.
    pub fn expectation(self) -> (&'static str, (&'static str, &'static str)) {
        match self {
            Persona::Commuter => ("maintenance_reminder", ("usage", "commuter")),
            Persona::LongDistance => ("road_trip_check", ("usage", "long_distance")),
            Persona::Aggressive => ("brake_tyre_check", ("style", "aggressive")),
            Persona::NightDriver => ("insurance_safe_driver", ("usage", "night_driver")),
            Persona::RideHailing => ("maintenance_reminder", ("usage", "high_utilisation")),
            Persona::PremiumShopper => ("care_membership", ("consumption_quality", "quality_high")),
            Persona::Lost => ("win_back", ("lifecycle", "lost")),
            Persona::NewCarOwner => ("accessories", ("vehicle", "new_vehicle")),
            Persona::EvOwner => ("ev_package", ("vehicle", "ev_owner")),
        }
    }
}
